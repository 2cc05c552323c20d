/* notify.h: the systemd notification protocol (sd_notify), written directly: one datagram to
 * $NOTIFY_SOCKET. Without that variable (not under systemd) every call does nothing. */
#ifndef LT_NOTIFY_H
#define LT_NOTIFY_H

#include <stdint.h>

/* Sends a state string such as "READY=1" or "WATCHDOG=1". Returns 0, or -1 on error. */
int notify_send(const char *state);
/* The watchdog interval systemd expects, in ms ($WATCHDOG_USEC), or 0 when none. */
uint64_t notify_watchdog_ms(void);

#endif
