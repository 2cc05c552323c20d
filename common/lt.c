/* lt.c: the reason table's names and messages. */
#include "lt.h"

const char *lt_reason_name(int reason)
{
    switch (reason) {
#define LT_REASON_CASE(name, num, msg)                                                             \
    case num:                                                                                      \
        return #name;
        LT_REASON_MAP(LT_REASON_CASE)
#undef LT_REASON_CASE
    }
    return "UNKNOWN";
}

const char *lt_reason_msg(int reason)
{
    switch (reason) {
#define LT_REASON_CASE(name, num, msg)                                                             \
    case num:                                                                                      \
        return msg;
        LT_REASON_MAP(LT_REASON_CASE)
#undef LT_REASON_CASE
    }
    return "unknown reason";
}
