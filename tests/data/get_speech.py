"""Fetch the real recorded speech the test suite uses, into a cache folder (nothing is committed).

    python tests/data/get_speech.py [DEST]

``DEST`` defaults to ``$DCAE_SPEECH_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/dcae-speech``. It gets:

- ``DEST/alsa/*.wav``: 8 clips of one male speaker, 48 kHz, ~1.5 s each (Debian package ``alsa-utils``);
- ``DEST/en/*.wav``: ~570 prompts of one female speaker, 16 kHz, 0.5-20 s (``asterisk-core-sounds-en-g722``);
- ``DEST/filelist.txt``: every clip, one absolute path a line, written last (its presence means "ready").

The packages come from the machine's own Debian/Ubuntu mirrors with ``apt-get download``, which needs
no root. When the machine has no package index (a fresh container), a private one is built in a
temporary folder (``apt-get update`` with its state redirected there), so neither root nor sudo is
needed and the system is not changed. The audio is decoded with FFmpeg (torchcodec) and written as
mono 16-bit WAV. Idempotent; concurrent runs on one DEST wait for each other (a lock file).
Exit 0 when the set is ready, 1 with one ``error:`` line saying what to do otherwise.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

PACKAGES = ("alsa-utils", "asterisk-core-sounds-en-g722")
MIN_FILES = 500  # a complete set has 576 clips
ALSA_SOUNDS = "usr/share/sounds/alsa"
ASTERISK_VOICE = "usr/share/asterisk/sounds/en_US_f_Allison"


class SpeechUnavailable(RuntimeError):
    """The speech set cannot be made here; the message (one line) says why and what to do."""


def default_dest() -> Path:
    if os.environ.get("DCAE_SPEECH_DIR"):
        return Path(os.environ["DCAE_SPEECH_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "dcae-speech"


def is_ready(dest: Path) -> bool:
    """True when ``dest/filelist.txt`` lists files that exist (it is written last, so a run that was
    killed leaves none; a folder of one's own with a filelist.txt is used as it is, never refetched)."""
    listing = dest / "filelist.txt"
    if not listing.is_file():
        return False
    files = [line for line in listing.read_text().splitlines() if line]
    return bool(files) and Path(files[0]).is_file() and Path(files[-1]).is_file()


@contextlib.contextmanager
def locked(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``dest/.lock`` (other runs on the same folder wait)."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".lock", "w") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, runs must not overlap
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], cwd: Path) -> tuple[bool, str]:
    """Run ``cmd``; (succeeded, the line that says what went wrong: its last ``E:`` line, else its first
    failed fetch, else its last line)."""
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    lines = [ln.strip() for ln in (result.stderr + "\n" + result.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("E:")][-1:] or [ln for ln in lines if ln.startswith("W: Failed")][:1]
    return result.returncode == 0, (errors or lines[-1:] or [f"exit code {result.returncode}"])[0]


def check_apt() -> None:
    """Raise :class:`SpeechUnavailable` unless apt-get and dpkg-deb are here."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SpeechUnavailable("apt-get/dpkg-deb not found: the test speech comes from Debian/Ubuntu packages "
                                f"({', '.join(PACKAGES)}); on another system set DCAE_SPEECH_DIR to a folder made "
                                "by this script on a Debian/Ubuntu machine")


def download_packages(work: Path) -> list[Path]:
    """``apt-get download`` the packages into ``work``: with the system's package index, else with a
    private one built in ``work`` (no root needed). Raises :class:`SpeechUnavailable`."""
    check_apt()
    options = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
    ok, message = _run(["apt-get", *options, "download", *PACKAGES], work)
    if not ok:  # no (or a stale) package index: build a private one, as any user
        private = [*options, "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}",
                   "-o", "Debug::NoLocking=1"]
        for sub in ("lists/partial", "cache/archives/partial"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        updated, index_message = _run(["apt-get", "-q", *private, "update"], work)
        ok, message = _run(["apt-get", *private, "download", *PACKAGES], work) if updated else (False, "")
        if not ok and (not updated or "Failed to fetch" in index_message):
            message = f"no package index: {index_message}"
    debs = sorted(work.glob("*.deb"))
    if not ok or len(debs) < len(PACKAGES):
        raise SpeechUnavailable(f"apt-get download {' '.join(PACKAGES)} failed ({message}); it needs access to the "
                                "Debian/Ubuntu package mirrors in /etc/apt/sources.list(.d) (on Ubuntu, the "
                                "'universe' component)")
    return debs


def convert(src: Path, dst: Path) -> None:
    """Decode ``src`` (any FFmpeg format) and write it as mono 16-bit WAV at its own rate, atomically."""
    import numpy as np
    import soundfile
    from torchcodec.decoders import AudioDecoder

    samples = AudioDecoder(str(src), num_channels=1).get_all_samples()
    data = np.clip(samples.data[0].numpy(), -1.0, 1.0)
    tmp = dst.with_name(f".{dst.name}.tmp")
    soundfile.write(str(tmp), data, int(samples.sample_rate), subtype="PCM_16", format="WAV")
    os.replace(tmp, dst)


def sources(root: Path) -> Iterator[tuple[Path, Path]]:
    """(extracted package file, path relative to DEST) for every clip of the set."""
    for f in sorted((root / ALSA_SOUNDS).glob("*.wav")):
        if f.stem != "Noise":  # not speech
            yield f, Path("alsa") / f.name
    voice = root / ASTERISK_VOICE
    for f in sorted(voice.rglob("*.g722")):
        yield f, Path("en") / (str(f.relative_to(voice).with_suffix("")).replace(os.sep, "_") + ".wav")


def fetch(dest: Path) -> int:
    """Make the speech set in ``dest`` unless it is there; returns the number of clips."""
    dest = dest.expanduser().resolve()
    with locked(dest):
        if not is_ready(dest):
            check_apt()
            try:
                import torchcodec.decoders  # noqa: F401 - FFmpeg's libraries decode the G.722 prompts
            except Exception as e:  # noqa: BLE001 - ImportError/RuntimeError/OSError when FFmpeg is missing
                raise SpeechUnavailable(f"cannot load torchcodec/FFmpeg ({type(e).__name__}); install FFmpeg "
                                        "(apt-get install -y ffmpeg) and the project (pip install -e .)") from None
            with tempfile.TemporaryDirectory(prefix="dcae-speech-") as tmp:
                work = Path(tmp)
                for deb in download_packages(work):
                    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "root")], check=True)
                listed = []
                for src, rel in sources(work / "root"):
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    try:
                        convert(src, dest / rel)
                    except Exception as e:  # noqa: BLE001
                        raise SpeechUnavailable(f"{src.name}: cannot convert ({str(e).strip().splitlines()[0]})") from None
                    listed.append(str(dest / rel))
            if len(listed) < MIN_FILES:
                raise SpeechUnavailable(f"the packages held only {len(listed)} clips (expected >= {MIN_FILES})")
            tmp_list = dest / ".filelist.txt.tmp"
            tmp_list.write_text("".join(f"{p}\n" for p in sorted(listed)))
            os.replace(tmp_list, dest / "filelist.txt")
        return len((dest / "filelist.txt").read_text().split())


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    dest = Path(argv[0]) if argv else default_dest()
    try:
        count = fetch(dest)
    except SpeechUnavailable as e:
        print(f"error: test speech not fetched into {dest}: {e}", file=sys.stderr)
        return 1
    print(f"speech set ready: {dest.expanduser().resolve()} ({count} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
