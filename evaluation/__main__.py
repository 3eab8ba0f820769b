"""``python -m evaluation``: the same command as ``dcae evaluate``."""
from dcae.cli.evaluate import evaluate_command

if __name__ == "__main__":
    evaluate_command(prog_name="python -m evaluation")
