"""Integer ids, checked: the client never sends an id the caller did not mean.

numpy casts silently (``np.asarray([1.7, 2.2], dtype=np.int64)`` is
``[1, 2]``, ``True`` is 1), while the JSON API rightly refuses floats and
bools. Everything that leaves the client as a user, item or community id
goes through as_ids() or as_pairs(), which accept Python ints (not bool)
and numpy integer arrays or scalars only, and name the first bad entry.
"""
import numpy as np

INT64_MAX = 2 ** 63 - 1


def _where(what, index):
    return "%s%s" % (what, "".join("[%d]" % i for i in index))


def _bad_type(what, index, value):
    return TypeError("%s = %r (%s): ids must be integers (Python int, or a numpy integer "
                     "array or scalar), not %s" % (_where(what, index), value, type(value).__name__,
                                                   "bool" if isinstance(value, (bool, np.bool_))
                                                   else "float" if isinstance(value, (float, np.floating))
                                                   else type(value).__name__))


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _from_objects(values, what):
    """int64 array from nested Python sequences, refusing anything that is
    not an int (np.asarray would turn True into 1 and 1.7 into 1.0)."""
    obj = np.empty(0, dtype=object) if len(values) == 0 else np.array(values, dtype=object)
    flat = obj.reshape(-1)
    if obj.ndim == 1 and any(isinstance(v, (list, tuple, np.ndarray)) for v in flat):
        _ragged(obj, what)  # rows of unequal length (numpy made a 1-D array of lists)
    for i, v in enumerate(flat):
        if not _is_int(v):
            index = np.unravel_index(i, obj.shape) if obj.ndim else ()
            raise _bad_type(what, tuple(int(j) for j in index), v)
        if not 0 <= v <= INT64_MAX:
            index = np.unravel_index(i, obj.shape)
            raise ValueError("%s = %d: ids must be in [0, 2^63 - 1]" %
                             (_where(what, tuple(int(j) for j in index)), v))
    return flat.astype(np.int64).reshape(obj.shape)


def _ragged(rows, what):
    """Raises for a 1-D object array of rows that differ in length (or
    are not rows), naming the first one unlike the first row."""
    first = next(i for i, v in enumerate(rows) if isinstance(v, (list, tuple, np.ndarray)))
    ref = len(rows[first])
    for i, v in enumerate(rows):
        index = (i,)
        if not isinstance(v, (list, tuple, np.ndarray)):
            raise ValueError("%s = %r is not a row of %d ids like %s" %
                             (_where(what, index), v, ref, _where(what, (first,))))
        if len(v) != ref:
            raise ValueError("%s has %d element%s, %s has %d: rows of one length expected" %
                             (_where(what, index), len(v), "" if len(v) == 1 else "s",
                              _where(what, (first,)), ref))
    raise ValueError("%s: rows of different lengths" % what)


def _checked(values, what):
    if isinstance(values, (bool, np.bool_, float, np.floating, complex, np.complexfloating)):
        raise _bad_type(what, (), values)
    if _is_int(values):
        if not 0 <= int(values) <= INT64_MAX:
            raise ValueError("%s = %d: ids must be in [0, 2^63 - 1]" % (what, int(values)))
        return np.array([int(values)], dtype=np.int64)
    if isinstance(values, (str, bytes, dict, set, frozenset)):
        raise TypeError("%s: expected a sequence or array of integer ids, not %s" %
                        (what, type(values).__name__))
    if not isinstance(values, np.ndarray) and not hasattr(values, "__array__"):
        if isinstance(values, (list, tuple, range)):
            return _from_objects(list(values), what)
        if hasattr(values, "__iter__"):
            return _from_objects(list(values), what)  # a generator of ids
        raise TypeError("%s: expected a sequence or array of integer ids, not %s" %
                        (what, type(values).__name__))
    arr = np.asarray(values)
    kind = arr.dtype.kind
    if kind == "O":
        return _from_objects(arr.tolist(), what) if arr.ndim else _checked(arr.item(), what)
    if kind not in "iu":
        if arr.size == 0:
            return arr.astype(np.int64)
        index = np.unravel_index(0, arr.shape) if arr.ndim else ()
        first = arr.reshape(-1)[0]
        raise _bad_type(what, tuple(int(j) for j in index),
                        first if kind == "b" else first.item() if hasattr(first, "item") else first)
    if kind == "u" and arr.size and arr.max() > np.uint64(INT64_MAX):
        i = int(np.argmax(arr.reshape(-1) > np.uint64(INT64_MAX)))
        raise ValueError("%s = %d: ids must be in [0, 2^63 - 1]" %
                         (_where(what, tuple(int(j) for j in np.unravel_index(i, arr.shape))),
                          int(arr.reshape(-1)[i])))
    return arr.astype(np.int64, copy=False)


def _no_negatives(arr, what):
    if arr.size:
        neg = np.flatnonzero(arr.reshape(-1) < 0)
        if len(neg):
            index = tuple(int(j) for j in np.unravel_index(int(neg[0]), arr.shape))
            raise ValueError("%s = %d: ids must be non-negative" %
                             (_where(what, index), int(arr.reshape(-1)[neg[0]])))
    return arr


def as_ids(values, what="users"):
    """@values as a contiguous 1-D int64 array of non-negative ids.

    Accepts a Python int, a sequence or iterator of Python ints, or a
    numpy (or torch CPU) integer array, 1-D or an (N, 1) column. Raises
    TypeError naming the first entry that is a float, bool, string or
    other object, ValueError for a negative id or one above 2^63 - 1, and
    for other shapes (an (N, 2) array of users is a mistake to refuse, not
    to flatten).
    """
    arr = _checked(values, what)
    if arr.ndim > 1 and not (arr.ndim == 2 and arr.shape[1] == 1):
        raise ValueError("%s must be a 1-D sequence of ids (or an (N, 1) column), not shape %s"
                         % (what, tuple(arr.shape)))
    return np.ascontiguousarray(_no_negatives(arr, what).reshape(-1), dtype=np.int64)


def as_pairs(values, what="pairs"):
    """@values as a contiguous (N, 2) int64 array of non-negative ids (rows
    of (user, item) or (user, community)); same checks as as_ids(), and
    ValueError unless the shape is (N, 2)."""
    arr = _checked(values, what)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError("%s must be an (N, 2) array of integer ids, not shape %s" %
                         (what, arr.shape))
    return np.ascontiguousarray(_no_negatives(arr, what), dtype=np.int64)


def as_count(value, what, minimum=1):
    """A count argument (n, candidates, k, batch_size...) as an int >= @minimum;
    TypeError for floats and bools (int(1.7) would be 1)."""
    if not _is_int(value):
        raise TypeError("%s must be an integer, not %r (%s)" % (what, value, type(value).__name__))
    if int(value) < minimum:
        raise ValueError("%s must be >= %d, not %d" % (what, minimum, int(value)))
    return int(value)


def as_seed(value, what="seed"):
    """A seed as an int in [0, 2^64); TypeError for floats and bools."""
    if not _is_int(value):
        raise TypeError("%s must be an integer, not %r (%s)" % (what, value, type(value).__name__))
    if not 0 <= int(value) < 2 ** 64:
        raise ValueError("%s must be in [0, 2^64), not %d" % (what, int(value)))
    return int(value)
