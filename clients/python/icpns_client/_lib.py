"""libicpns through ctypes: finding the library, the struct mirrors, the
function prototypes, and C errors as the client's exceptions.

The library is found, in this order, at
  1. $ICPNS_LIBRARY (a path; nothing else is tried when it is set),
  2. the installed library: ctypes.util.find_library("icpns") (ldconfig's
     cache), then libicpns.so.0 under /usr/local/lib and /usr/lib (with
     and without the multiarch directory),
  3. the build trees of a source checkout this package sits in
     (build*/src/lib/libicpns.so.0 next to clients/python), "build" first.
A library that does not load (e.g. a sanitizer build, which needs its
runtime preloaded) is skipped, and LibraryNotFound says what was tried and
why each failed.

Every plain struct mirrored here is checked against icpns_abi_sizeof() of
the library at load time: a library of another version is refused, not
misread. ctypes calls into a CDLL release the GIL for the call's duration,
so sampling and builds run beside other Python threads.
"""
import ctypes
import ctypes.util
import glob
import os
import sysconfig
import threading

from .client import BadRequest, IcpnsError

# Error codes of include/icpns/common.h.
ENOMEM, EINVAL, EIO, EPARSE, EUNKNOWN_USER, EINFEASIBLE, ENOCOMMUNITY, ELIMIT = \
    -1, -2, -3, -4, -5, -6, -7, -8
NONE = 0xFFFFFFFF  # ICPNS_NONE
SAMPLE_SUBSTITUTE_PNS = 1
ROW_FALLBACK, ROW_SUBSTITUTED = 1, 2


class LibraryNotFound(OSError):
    """libicpns could not be found or loaded; the message lists where the
    client looked and why each candidate failed."""


class TablesError(IcpnsError, ValueError):
    """Tables or an interactions file that libicpns refused (the daemon's
    codes: "tables_invalid" for a malformed file or value, "tables_unreadable"
    for a file that cannot be read, "tables_too_large" beyond the engine's
    limits). message is "path:line: field: what"; path, line and field are
    also attributes (path None and line 0 when not about a file)."""

    def __init__(self, status, code, message, field=None, row=None, request_id=None, path=None,
                 line=0):
        super().__init__(status, code, message, field, row, request_id)
        self.path, self.line = path, line


# ---- struct mirrors ----------------------------------------------------------------

class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("path", ctypes.c_char * 512), ("line", ctypes.c_uint64),
                ("field", ctypes.c_char * 64), ("message", ctypes.c_char * 256)]


class Params(ctypes.Structure):
    _fields_ = [("alpha", ctypes.c_double), ("epsilon", ctypes.c_double),
                ("beta", ctypes.c_double)]


class Part(ctypes.Structure):
    _fields_ = [("strategy", ctypes.c_int), ("slots", ctypes.c_uint32)]


class Request(ctypes.Structure):
    _fields_ = [("users", ctypes.c_void_p), ("rows", ctypes.c_uint32),
                ("n_parts", ctypes.c_uint32), ("parts", ctypes.POINTER(Part)),
                ("seed", ctypes.c_uint64), ("flags", ctypes.c_uint)]


class Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_int64), ("b", ctypes.c_int64)]


class LoadReport(ctypes.Structure):
    _fields_ = [("lines", ctypes.c_uint64), ("data_lines", ctypes.c_uint64),
                ("skipped_lines", ctypes.c_uint64), ("header_line", ctypes.c_uint64),
                ("rows", ctypes.c_uint64), ("dropped_rating", ctypes.c_uint64),
                ("by_count", ctypes.c_uint64 * 9), ("count_min", ctypes.c_uint64),
                ("count_max", ctypes.c_uint64), ("kind", ctypes.c_int32),
                ("format", ctypes.c_int32), ("detected", ctypes.c_uint8),
                ("bom", ctypes.c_uint8), ("crlf", ctypes.c_uint8),
                ("counts_items", ctypes.c_uint8), ("separator", ctypes.c_char * 12),
                ("reason", ctypes.c_char * 100), ("header", ctypes.c_char * 100),
                ("path", ctypes.c_char * 512)]


class SnapshotInfo(ctypes.Structure):
    _fields_ = [("fingerprint", ctypes.c_uint64), ("interactions", ctypes.c_uint64),
                ("bytes", ctypes.c_uint64), ("users", ctypes.c_uint32),
                ("items", ctypes.c_uint32), ("communities", ctypes.c_uint32),
                ("sampler_revision", ctypes.c_uint32), ("params", Params),
                ("pop_from_file", ctypes.c_uint8)]


class UserInfo(ctypes.Structure):
    _fields_ = [("community", ctypes.c_int64), ("positives", ctypes.c_uint32),
                ("has_community", ctypes.c_uint8), ("fallback", ctypes.c_uint8),
                ("mass_covered", ctypes.c_double)]


class CommunityInfo(ctypes.Structure):
    _fields_ = [("community", ctypes.c_int64), ("users", ctypes.c_uint32),
                ("support", ctypes.c_uint32), ("mass", ctypes.c_double)]


class ItemRank(ctypes.Structure):
    _fields_ = [("item", ctypes.c_int64), ("count", ctypes.c_uint64),
                ("weight", ctypes.c_double), ("probability", ctypes.c_double)]


class SampleStats(ctypes.Structure):
    _fields_ = [("draws", ctypes.c_uint64), ("rejections", ctypes.c_uint64),
                ("residual_rows", ctypes.c_uint64), ("fallback_rows", ctypes.c_uint64)]


_MIRRORS = {"error": Error, "params": Params, "part": Part, "request": Request, "pair": Pair,
            "load_report": LoadReport, "snapshot_info": SnapshotInfo, "user_info": UserInfo,
            "community_info": CommunityInfo, "item_rank": ItemRank, "sample_stats": SampleStats}

_P = ctypes.c_void_p
_I64P = ctypes.POINTER(ctypes.c_int64)
_U32P = ctypes.POINTER(ctypes.c_uint32)
_E = ctypes.POINTER(Error)

# name: (restype, argtypes)
_PROTOS = {
    "icpns_version": (ctypes.c_char_p, []),
    "icpns_abi_sizeof": (ctypes.c_size_t, [ctypes.c_char_p]),
    "icpns_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "icpns_errname": (ctypes.c_char_p, [ctypes.c_int]),
    "icpns_error_format": (None, [_E, ctypes.c_char_p, ctypes.c_size_t]),
    "icpns_params_check": (ctypes.c_int, [ctypes.POINTER(Params), _E]),
    "icpns_dataset_new": (_P, []),
    "icpns_dataset_free": (_P, [_P]),
    "icpns_dataset_add_arrays": (ctypes.c_int, [_P, _P, ctypes.c_size_t, _P, ctypes.c_size_t,
                                                _P, ctypes.c_size_t, _E]),
    "icpns_dataset_set_communities": (ctypes.c_int, [_P, _P, ctypes.c_size_t, ctypes.c_bool,
                                                     _E]),
    "icpns_tables_load": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(Params),
                                         ctypes.POINTER(_P), _E]),
    "icpns_version_record_read": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint64),
                                                 ctypes.POINTER(ctypes.c_uint64), _E]),
    "icpns_snapshot_build": (ctypes.c_int, [_P, ctypes.POINTER(Params), ctypes.POINTER(_P), _E]),
    "icpns_snapshot_unref": (_P, [_P]),
    "icpns_snapshot_info": (None, [_P, ctypes.POINTER(SnapshotInfo)]),
    "icpns_snapshot_item_ids": (_I64P, [_P]),
    "icpns_snapshot_user": (ctypes.c_int, [_P, ctypes.c_int64, ctypes.POINTER(UserInfo)]),
    "icpns_snapshot_community_find": (ctypes.c_uint32, [_P, ctypes.c_int64]),
    "icpns_snapshot_community": (ctypes.c_int, [_P, ctypes.c_uint32,
                                                ctypes.POINTER(CommunityInfo)]),
    "icpns_community_top_items": (ctypes.c_int, [_P, ctypes.c_uint32, ctypes.c_uint32, _P,
                                                 _U32P]),
    "icpns_weights_build": (ctypes.c_int, [_P, ctypes.POINTER(Params), ctypes.POINTER(_P), _E]),
    "icpns_weights_free": (_P, [_P]),
    "icpns_work_new": (_P, []),
    "icpns_work_free": (_P, [_P]),
    "icpns_sample_request": (ctypes.c_int, [_P, _P, _P, ctypes.POINTER(Request), _P, _P, _P, _P,
                                            ctypes.POINTER(SampleStats), _U32P]),
    "icpns_interactions_read": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_double,
                                               ctypes.c_uint, ctypes.POINTER(_I64P),
                                               ctypes.POINTER(_I64P),
                                               ctypes.POINTER(ctypes.c_size_t),
                                               ctypes.POINTER(LoadReport), _E]),
    "icpns_interactions_free": (None, [_I64P, _I64P]),
    "icpns_load_report_format": (None, [ctypes.POINTER(LoadReport), ctypes.c_char_p,
                                        ctypes.c_size_t]),
}


# ---- finding and loading ---------------------------------------------------------------

SONAME = "libicpns.so.0"


def _source_root():
    """The checkout this package sits in (clients/python/icpns_client), or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", "..", ".."))
    return root if os.path.isfile(os.path.join(root, "include", "icpns.h")) else None


def candidates():
    """[(how, path or name)] in the order they are tried."""
    env = os.environ.get("ICPNS_LIBRARY")
    if env:
        return [("$ICPNS_LIBRARY", env)]
    out = []
    name = ctypes.util.find_library("icpns")
    out.append(("ldconfig", name) if name else ("ldconfig", None))
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for prefix in ("/usr/local/lib", "/usr/lib"):
        for d in ([os.path.join(prefix, multiarch)] if multiarch else []) + [prefix]:
            out.append(("installed", os.path.join(d, SONAME)))
    root = _source_root()
    if root:
        trees = sorted(glob.glob(os.path.join(root, "build*", "src", "lib", SONAME)),
                       key=lambda p: (os.path.basename(os.path.dirname(os.path.dirname(
                           os.path.dirname(p)))) != "build", p))
        out += [("build tree", p) for p in trees] or [
            ("build tree", os.path.join(root, "build*", "src", "lib", SONAME))]
    return out


_lock = threading.Lock()
_lib = None

_RUNTIMES = ((b"libasan.so", "AddressSanitizer"), (b"libtsan.so", "ThreadSanitizer"))


def _missing_runtime(path):
    """The sanitizer a library was built with when its runtime is not in
    this process (loading it would abort the interpreter), else None."""
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 20)
        with open("/proc/self/maps", "rb") as f:
            maps = f.read()
    except OSError:
        return None
    for runtime, name in _RUNTIMES:
        if runtime in data and runtime not in maps:
            return name
    return None


def _prototype(lib):
    for name, (res, args) in _PROTOS.items():
        f = getattr(lib, name)  # AttributeError: an older library
        f.restype, f.argtypes = res, args


def _check_abi(lib, where):
    for name, cls in _MIRRORS.items():
        theirs = lib.icpns_abi_sizeof(name.encode())
        if theirs != ctypes.sizeof(cls):
            raise LibraryNotFound("%s does not match this icpns_client: icpns_%s_t is %d bytes "
                                  "there, %d here (a library of another version)"
                                  % (where, name, theirs, ctypes.sizeof(cls)))


def load():
    """The loaded, prototyped and checked libicpns (once per process)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for how, path in candidates():
            if path is None:
                tried.append("%s: no libicpns in the cache" % how)
                continue
            if os.path.sep in path and not os.path.exists(path):
                tried.append("%s: %s (absent)" % (how, path))
                continue
            san = _missing_runtime(path) if os.path.sep in path else None
            if san:
                tried.append("%s: %s (built with %s, whose runtime this process has not "
                             "loaded: preload it, or use another build)" % (how, path, san))
                continue
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                tried.append("%s: %s (%s)" % (how, path, e))
                continue
            try:
                _prototype(lib)
            except AttributeError as e:
                tried.append("%s: %s (too old for this client: %s)" % (how, path, e))
                continue
            _check_abi(lib, path)
            lib.path = path
            _lib = lib
            return lib
        raise LibraryNotFound(
            "libicpns (%s) not found; looked at:\n  %s\nBuild it (meson setup build && meson "
            "compile -C build), install it (meson install), or set ICPNS_LIBRARY to its path"
            % (SONAME, "\n  ".join(tried)))


# ---- errors -----------------------------------------------------------------------------

def text(b):
    return b.decode("utf-8", "replace")


def formatted(lib, err):
    buf = ctypes.create_string_buffer(2048)
    lib.icpns_error_format(ctypes.byref(err), buf, len(buf))
    return text(buf.value)


def tables_error(lib, rc, err):
    """A TablesError (or MemoryError) for a failed load or build."""
    if rc == ENOMEM:
        return MemoryError(formatted(lib, err))
    code = {EIO: "tables_unreadable", ELIMIT: "tables_too_large"}.get(rc, "tables_invalid")
    return TablesError(0, code, formatted(lib, err), text(err.field) or None, None,
                       path=text(err.path) or None, line=int(err.line))


def bad_request(code, field, message, row=None):
    return BadRequest(400, code, message, field, row)
