"""Every BT_API function of include/barlow.h is declared in the package with
the right restype, number and types of arguments; the status table matches."""
import ctypes
import os
import re

import pytest

import barlow
from barlow import _lib

HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "include", "barlow.h")

SCALARS = {
    "void": None, "int32_t": ctypes.c_int32, "bt_status": ctypes.c_int32, "int64_t": ctypes.c_int64,
    "uint64_t": ctypes.c_uint64, "uint32_t": ctypes.c_uint32, "uint8_t": ctypes.c_uint8,
    "size_t": ctypes.c_size_t, "double": ctypes.c_double, "float": ctypes.c_float,
    "int": ctypes.c_int,
}


def strip_comments(text):
    """The header without comments and preprocessor lines (BT_API's own #define)."""
    text = re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", " ", text, flags=re.S))
    return re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", "", text, flags=re.M)


def split_args(text):
    """Split a parameter list at top-level commas (function pointers stay whole)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return [] if out == ["void"] else out


def parse_header():
    """name -> (return type text, [parameter texts]) for every BT_API declaration."""
    text = strip_comments(open(HEADER).read())
    decls = {}
    for m in re.finditer(r"\bBT_API\s+([^;{]*?)\b(bt_\w+)\s*\(((?:[^()]|\([^()]*\))*)\)\s*;", text):
        ret, name, args = m.group(1), m.group(2), m.group(3)
        decls[name] = (" ".join(ret.split()), [" ".join(a.split()) for a in split_args(args)])
    return decls


def expected_ctype(decl):
    """The ctypes type a C parameter or return type text must be declared as;
    'funcptr' for a function pointer."""
    if "(" in decl or decl.split()[0] in _lib.FUNCTION_TYPES:
        return "funcptr"
    words = decl.replace("*", " * ").split()
    stars = words.count("*")
    names = [w for w in words if w not in ("const", "*", "struct", "unsigned", "signed")]
    base = names[0]  # the type; a parameter name may follow
    if base == "char":
        t = ctypes.c_char_p
        stars -= 1
    elif base in SCALARS:
        t = SCALARS[base]
    elif base in _lib.HANDLE_TYPES:
        t = _lib.HANDLE_TYPES[base]
    else:
        raise AssertionError("test_declarations: unknown C type in %r" % decl)
    for _ in range(stars):
        t = ctypes.c_void_p if t is None else ctypes.POINTER(t)
    return t


DECLS = parse_header()


def test_header_parsed():
    assert len(DECLS) >= 80, "parsed only %d BT_API declarations" % len(DECLS)
    count = len(re.findall(r"^\s*BT_API\b", strip_comments(open(HEADER).read()), re.M))
    assert count == len(DECLS), "header has %d BT_API lines, parsed %d" % (count, len(DECLS))


def test_every_function_declared():
    missing = sorted(set(DECLS) - set(_lib.DECLARATIONS))
    assert not missing, "BT_API functions without a ctypes declaration in barlow/_lib.py: %s" % missing
    extra = sorted(set(_lib.DECLARATIONS) - set(DECLS))
    assert not extra, "declared in barlow/_lib.py but not in barlow.h: %s" % extra


@pytest.mark.parametrize("name", sorted(DECLS))
def test_declaration_matches_header(name):
    ret, params = DECLS[name]
    restype, argtypes = _lib.DECLARATIONS[name]
    assert len(argtypes) == len(params), "%s: header has %d arguments, package %d" % (
        name, len(params), len(argtypes))
    assert restype == expected_ctype(ret.replace("BT_API", "").strip() + " r"), name
    for i, (p, a) in enumerate(zip(params, argtypes)):
        want = expected_ctype(p)
        if want == "funcptr":
            assert isinstance(a, type) and issubclass(a, ctypes._CFuncPtr), (name, i, p)
        else:
            assert a == want, "%s argument %d (%s): declared %r, expected %r" % (name, i, p, a, want)
    fn = getattr(barlow._lib.lib(), name)  # the loaded library exports it and has it declared
    assert fn.argtypes == argtypes and fn.restype == restype


def test_status_table_matches_header():
    text = re.sub(r"/\*.*?\*/", " ", open(HEADER).read(), flags=re.S)
    codes = {m.group(1): int(m.group(2))
             for m in re.finditer(r"#define\s+(BT_OK|BT_E_\w+)\s+(\d+)", text)}
    assert codes == barlow.STATUS_CODES
    for code, name in barlow.STATUS_NAMES.items():
        assert barlow.status_string(code) != "unknown status", name


def test_handles_are_distinct_types():
    t = barlow.Tensor((2, 2))
    with pytest.raises(ctypes.ArgumentError):
        _lib.lib().bt_model_embed_dim(t._p)  # a tensor where a model is expected


def test_status_constants():
    for name, code in barlow.STATUS_CODES.items():
        assert getattr(_lib, name) == code, name
