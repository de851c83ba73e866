"""File access under a root prefix, plus the CPU list and CPU mask formats.

Every path in this tool is written as it appears on the target system ("/proc/sys/...")
and is only turned into a real path here, so `--root DIR` redirects all reads and writes
to a fixture tree. Reads never raise: a missing, unreadable or undecodable file is None.
Writes raise WriteError with a message that names the file and the reason.
"""
import errno
import os


class WriteError(Exception):
    pass


def _why(e):
    msg = e.strerror or str(e)
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        msg += " (run as root on the relay host)"
    return msg


class Root:
    def __init__(self, top="/"):
        self.top = os.path.abspath(top)
        # The live system: only then are services touched and `sysctl -w` printed.
        self.live = self.top == "/"

    def path(self, p):
        if self.live:
            return p
        return os.path.join(self.top, p.lstrip("/"))

    # ---- reads: never raise -------------------------------------------------------------

    def read(self, p):
        """The file's text (bytes that are not UTF-8 kept via surrogateescape), or None."""
        try:
            with open(self.path(p), "rb") as f:
                data = f.read(1 << 20)
        except (OSError, ValueError):
            return None
        return data.decode("utf-8", "surrogateescape")

    def listdir(self, p):
        """Sorted names in a directory, or None if it cannot be listed."""
        try:
            return sorted(os.listdir(self.path(p)))
        except (OSError, ValueError):
            return None

    def isdir(self, p):
        return os.path.isdir(self.path(p))

    def exists(self, p):
        return os.path.lexists(self.path(p))

    def readlink(self, p):
        try:
            return os.readlink(self.path(p))
        except (OSError, ValueError):
            return None

    # ---- writes: raise WriteError -------------------------------------------------------

    def write(self, p, text):
        try:
            with open(self.path(p), "wb") as f:
                f.write(text.encode("utf-8", "surrogateescape"))
        except OSError as e:
            raise WriteError("cannot write %s: %s" % (p, _why(e))) from None

    def write_atomic(self, p, text):
        """For files we own (state, drop-ins): write a temporary file and rename it."""
        tmp = p + ".tmp"
        self.write(tmp, text)
        try:
            os.replace(self.path(tmp), self.path(p))
        except OSError as e:
            raise WriteError("cannot rename %s to %s: %s" % (tmp, p, _why(e))) from None

    def makedirs(self, p):
        """Create p and missing parents; return the directories created, outermost first."""
        missing = []
        d = p
        while d not in ("/", "") and not os.path.isdir(self.path(d)):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            try:
                os.mkdir(self.path(d), 0o755)
            except OSError as e:
                raise WriteError("cannot create directory %s: %s" % (d, _why(e))) from None
        return list(reversed(missing))

    def symlink(self, target, p):
        try:
            os.symlink(target, self.path(p))
        except OSError as e:
            raise WriteError("cannot create symlink %s: %s" % (p, _why(e))) from None

    def remove(self, p):
        try:
            os.unlink(self.path(p))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise WriteError("cannot remove %s: %s" % (p, _why(e))) from None

    def rmdir_if_empty(self, p):
        try:
            os.rmdir(self.path(p))
        except OSError:
            pass


# ---- CPU lists ("0-3,8") and masks ("00000000,0000000f") ---------------------------------


def parse_cpulist(text):
    """'0-3,8' -> [0, 1, 2, 3, 8]; '' -> []; garbage -> None."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return []
    cpus = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-", 1)
                lo, hi = int(lo), int(hi)
                if lo < 0 or hi < lo or hi - lo > 1 << 16:
                    return None
                cpus.update(range(lo, hi + 1))
            else:
                n = int(part)
                if n < 0:
                    return None
                cpus.add(n)
    except ValueError:
        return None
    return sorted(cpus)


def format_cpulist(cpus):
    """[0, 1, 2, 3, 8] -> '0-3,8' (the form `ringrelay serve --cpus` takes)."""
    cpus = sorted(set(cpus))
    parts = []
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        if j == i:
            parts.append(str(cpus[i]))
        else:
            parts.append("%d-%d" % (cpus[i], cpus[j]))
        i = j + 1
    return ",".join(parts)


def parse_mask(text):
    """'00000000,0000000f' -> 15; garbage -> None."""
    if text is None:
        return None
    text = text.strip().replace(",", "")
    if not text:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None


def mask_of(cpus):
    m = 0
    for c in cpus:
        m |= 1 << c
    return m


def cpus_of(mask):
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def format_mask(mask, like=None):
    """A mask in the kernel's comma-separated 32-bit groups, as many groups as `like` has."""
    groups = max(1, (mask.bit_length() + 31) // 32)
    if like:
        groups = max(groups, like.strip().count(",") + 1)
    words = ["%08x" % (mask >> (32 * i) & 0xFFFFFFFF) for i in reversed(range(groups))]
    return ",".join(words)
