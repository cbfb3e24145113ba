"""Files that are often mistaken for checkpoints, named so the user knows what to do: a Git LFS pointer (the
repository was cloned without ``git lfs``) and an HTML page (a download that saved an error or login page)."""

from __future__ import annotations

import re

from ckpttool.errors import CkptError, UnsupportedFormat
from ckpttool.formats.base import Format, Probe

LFS = re.compile(rb"^version https://git-lfs\.github\.com/spec/v1\s", re.M)
LFS_SIZE = re.compile(rb"^size (\d+)", re.M)


class GitLfsPointer(Format):
    name = "git-lfs-pointer"
    description = "a Git LFS pointer file (the checkpoint itself was never downloaded)"

    def diagnose(self, probe: Probe) -> CkptError | None:
        if probe.size > 1024 or not LFS.match(probe.head):
            return None
        size = LFS_SIZE.search(probe.head)
        real = f"{int(size.group(1)):,} bytes" if size else "unknown size"
        return UnsupportedFormat(
            f"{probe.path}: this is a Git LFS pointer (the real file has {real}), not the checkpoint: run "
            "`git lfs pull` in the repository, or download the file itself",
            path=probe.path,
        )


class HtmlPage(Format):
    name = "html-page"
    description = "an HTML page saved in place of a checkpoint"

    def diagnose(self, probe: Probe) -> CkptError | None:
        text = probe.head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if not (text.startswith((b"<!doctype html", b"<html", b"<?xml")) or b"<html" in text[:200]):
            return None
        return UnsupportedFormat(
            f"{probe.path}: this is an HTML page ({probe.size:,} bytes), not a checkpoint: the download saved a web "
            "page (an error, login or preview page); download the file itself (a direct link, e.g. Hugging Face "
            "'resolve/main/...' rather than 'blob/main/...')",
            path=probe.path,
        )
