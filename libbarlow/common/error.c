/* error.c - status texts and the thread-local detail message. */
#include "common/internal.h"

#include <stdio.h>
#include <string.h>

#define BTI_ERROR_CAP 512

static _Thread_local char last_error[BTI_ERROR_CAP];

BT_API const char *bt_status_string(bt_status s)
{
    switch (s) {
    case BT_OK: return "ok";
    case BT_E_INVALID_ARG: return "invalid argument";
    case BT_E_NOMEM: return "out of memory";
    case BT_E_SHAPE: return "shape mismatch";
    case BT_E_STATE: return "invalid state";
    case BT_E_UNSUPPORTED: return "unsupported";
    case BT_E_MISUSE: return "misuse of the API";
    case BT_E_IO: return "input/output error";
    case BT_E_FORMAT: return "malformed data";
    case BT_E_NUMERIC: return "non-finite value";
    case BT_E_INTERNAL: return "internal error";
    case BT_E_COMM: return "communication failed";
    default: return "unknown status";
    }
}

BT_API const char *bt_last_error(void) { return last_error; }

bt_status bti_fail(bt_status status, const char *fmt, ...)
{
    /* Formatted apart first: callers may pass bt_last_error() itself to wrap it. */
    char text[BTI_ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    memcpy(last_error, text, sizeof text);
    return status;
}
