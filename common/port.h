/* port.h: loopback ports for the tests and the benchmark to give the daemons they start. */
#ifndef LT_PORT_H
#define LT_PORT_H

/* A free loopback TCP port, below the kernel's ephemeral range (ip_local_port_range).
 *
 * The usual way (bind port 0, read the port, close) hands out a port from the ephemeral range,
 * and any outgoing connection of the machine may take it before the daemon binds: a till's
 * own connect attempts to the daemon that is still starting do exactly that (e2e under
 * valgrind: "cannot bind tcp://127.0.0.1:50509: Address already in use"). Ports below the range
 * are never given to outgoing connections. The search starts at a place drawn from the
 * process id and the clock, moves on by one per call (never the same port twice in one
 * process; callers take turns: it keeps no lock), and skips ports it cannot bind. Returns the
 * port, or -1 if none is free. */
int lt_free_port(void);

#endif
