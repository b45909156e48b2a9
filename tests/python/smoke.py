"""ctypes smoke test: load the shared library, create and read a tensor, set an
option, read an error message. Usage: python3 tests/python/smoke.py path/to/libbarlow.so"""
import ctypes
import sys

lib = ctypes.CDLL(sys.argv[1])
lib.bt_last_error.restype = ctypes.c_char_p
lib.bt_version_string.restype = ctypes.c_char_p
lib.bt_build_info.restype = ctypes.c_char_p
lib.bt_tensor_data.restype = ctypes.POINTER(ctypes.c_float)
lib.bt_tensor_data.argtypes = [ctypes.c_void_p]
lib.bt_tensor_dim.restype = ctypes.c_int64
lib.bt_tensor_dim.argtypes = [ctypes.c_void_p, ctypes.c_int32]
lib.bt_tensor_numel.restype = ctypes.c_int64
lib.bt_tensor_numel.argtypes = [ctypes.c_void_p]
lib.bt_tensor_free.argtypes = [ctypes.c_void_p]
lib.bt_config_free.argtypes = [ctypes.c_void_p]
lib.bt_config_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
lib.bt_config_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]

passed = 0
def check(cond, what):
    global passed
    if not cond:
        print("python: FAIL", what)
        sys.exit(1)
    passed += 1

check(lib.bt_version_number() >= 100, "version number")
check(lib.bt_version_string().decode().count(".") == 2, "version string")

t = ctypes.c_void_p()
shape = (ctypes.c_int64 * 3)(2, 3, 4)
check(lib.bt_tensor_create(ctypes.byref(t), 3, shape) == 0, "tensor create")
check(lib.bt_tensor_numel(t) == 24 and lib.bt_tensor_dim(t, -1) == 4, "tensor shape")
data = lib.bt_tensor_data(t)
data[23] = 2.5
check(lib.bt_tensor_data(t)[23] == 2.5 and data[0] == 0.0, "tensor data")
lib.bt_tensor_free(t)
check(lib.bt_tensor_numel(t) == -1, "freed tensor is refused")

c = ctypes.c_void_p()
check(lib.bt_config_create(ctypes.byref(c)) == 0, "config create")
check(lib.bt_config_set(c, b"loss.lambda", b"0.004") == 0, "config set")
buf = ctypes.create_string_buffer(64)
check(lib.bt_config_get(c, b"loss.lambda", buf, 64) == 0 and buf.value == b"0.004", "config get")
check(lib.bt_config_set(c, b"loss.lambda", b"lots") == 1, "bad value refused")
msg = lib.bt_last_error().decode()
check("loss.lambda" in msg and "lots" in msg, "error message names option and value: " + msg)
check(lib.bt_config_set(c, b"no.such", b"1") == 5, "unknown option")
lib.bt_config_free(c)
print("python: %d passed, 0 failed (%s)" % (passed, lib.bt_build_info().decode()))
