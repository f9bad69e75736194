/* notify.h - sd_notify(3) without libsystemd: a datagram to $NOTIFY_SOCKET. */
#ifndef ICPNSD_NOTIFY_H
#define ICPNSD_NOTIFY_H
#include <stdint.h>
/* Sends @msg ("READY=1\nSTATUS=...") if $NOTIFY_SOCKET is set; 0, or -errno. */
int icpnsd_notify(const char *msg);
/* Half of $WATCHDOG_USEC in milliseconds when the watchdog is on for us, else 0. */
uint64_t icpnsd_watchdog_interval_ms(void);
#endif
