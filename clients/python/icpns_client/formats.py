"""Interactions files read by libicpns: the daemon's loader, from Python.

    from icpns_client import read_interactions
    users, items, report = read_interactions("ml-1m/ratings.dat", min_rating=3)
    print(report)   # ratings.dat: pairs (detected: ...): 1,000,209 lines -> 836,478 pairs; ...

Every format of proto/tables.md (pairs with tab, comma, '::' or blanks and
optional rating and timestamp columns, MovieLens ratings.csv with its
header, RecBole .inter, LightGCN adjacency lists, sequence lists) has one
definition, the C one icpnsd and `icpns check` use; this module calls it
(icpns_interactions_read) so a Python pipeline reads a file exactly as the
daemon will. Needs libicpns (see icpns_client._lib for where it is looked
for; LibraryNotFound says where it looked).
"""
import ctypes
import math
import os

import numpy as np

from . import _lib as L

FORMATS = ("auto", "pairs", "recbole", "adjacency", "lists")
_FORMAT_NAMES = {0: "auto", 1: "pairs", 2: "recbole", 3: "adjacency", 4: "lists"}
_KINDS = {0: "interactions", 1: "journal", 2: "communities", 3: "popularity", 4: "items"}


class LoadReport:
    """What the loader made of a file (icpns_load_report_t): format (its
    name) and whether it was detected, reason, lines, data_lines,
    skipped_lines, header_line and header, rows (pairs produced),
    dropped_rating, count_min / count_max and by_count (fields or items
    per line), bom, crlf, separator, path. str() is the line `icpns
    check` prints."""

    def __init__(self, rep, line):
        self.kind = _KINDS.get(rep.kind, str(rep.kind))
        self.format = _FORMAT_NAMES.get(rep.format, str(rep.format))
        self.detected, self.bom, self.crlf = bool(rep.detected), bool(rep.bom), bool(rep.crlf)
        self.counts_items = bool(rep.counts_items)
        for k in ("lines", "data_lines", "skipped_lines", "header_line", "rows",
                  "dropped_rating", "count_min", "count_max"):
            setattr(self, k, int(getattr(rep, k)))
        self.by_count = [int(x) for x in rep.by_count]
        self.separator, self.reason = L.text(rep.separator), L.text(rep.reason)
        self.header, self.path = L.text(rep.header), L.text(rep.path)
        self._line = line

    def __str__(self):
        return self._line

    def __repr__(self):
        return "LoadReport(%r)" % self._line


def read_interactions(path, format="auto", min_rating=None, extra_columns=False):
    """Reads an interactions file with icpnsd's loader.

    format: "auto" (detected from the whole file; a file that could be read
        two ways is refused, naming the candidates) or one of "pairs",
        "recbole", "adjacency", "lists" (aliases "tsv", "csv", "inter",
        "lightgcn", "sequences").
    min_rating: keep only rows rated >= it (pairs and recbole files).
    extra_columns: True ignores pairs columns after the 4th instead of
        refusing the file.

    Returns (users, items, report): two int64 arrays of the pairs in file
    order (duplicates kept) and a LoadReport. Raises TablesError (a
    ValueError; code tables_invalid, tables_unreadable or tables_too_large,
    with path, line and field) for a file the daemon would refuse, and
    LibraryNotFound when libicpns cannot be found.
    """
    lib = L.load()
    if not isinstance(format, str):
        raise TypeError("format must be a string, not %r" % (format,))
    if min_rating is None:
        rating = math.nan
    elif isinstance(min_rating, bool) or not isinstance(min_rating, (int, float, np.integer,
                                                                     np.floating)):
        raise TypeError("min_rating must be a number or None, not %r" % (min_rating,))
    else:
        rating = float(min_rating)
        if math.isnan(rating):
            raise ValueError("min_rating must be a number or None, not nan")
    users, items = L._I64P(), L._I64P()
    n = ctypes.c_size_t(0)
    rep, err = L.LoadReport(), L.Error()
    rc = lib.icpns_interactions_read(os.fsencode(path), format.encode(), rating,
                                     1 if extra_columns else 0, ctypes.byref(users),
                                     ctypes.byref(items), ctypes.byref(n), ctypes.byref(rep),
                                     ctypes.byref(err))
    if rc:
        raise L.tables_error(lib, rc, err)
    try:
        count = n.value
        u = np.ctypeslib.as_array(users, (count,)).copy() if count else np.zeros(0, np.int64)
        i = np.ctypeslib.as_array(items, (count,)).copy() if count else np.zeros(0, np.int64)
    finally:
        lib.icpns_interactions_free(users, items)
    line = ctypes.create_string_buffer(2048)
    lib.icpns_load_report_format(ctypes.byref(rep), line, len(line))
    return u, i, LoadReport(rep, L.text(line.value))
