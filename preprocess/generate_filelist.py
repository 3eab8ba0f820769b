"""The reference's filelist tool, same flags: ``python preprocess/generate_filelist.py --paths DIR... --out F``
(also ``dcae filelist``; the command is :mod:`dcae.cli.filelist`, the scan :mod:`preprocess.scan`)."""
import sys
from pathlib import Path

if __package__ in (None, ""):  # run by path from a clone: make the project root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcae.cli.filelist import filelist_command  # noqa: E402

if __name__ == "__main__":
    filelist_command(prog_name="generate_filelist.py")
