/* port.c: lt_free_port(). */
#include "port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PORT_LOW 10000 /* below: well-known and registered services people run */

/* The first port of the ephemeral range (32768 unless configured otherwise). */
static int ephemeral_low(void)
{
    int lo = 32768, hi = 60999;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f != NULL) {
        if (fscanf(f, "%d %d", &lo, &hi) != 2)
            lo = 32768;
        fclose(f);
    }
    return lo;
}

static int can_bind(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int lt_free_port(void)
{
    static unsigned next; /* offset of the next port to try; 0: not drawn yet */
    int lo = PORT_LOW, hi = ephemeral_low();
    if (hi - lo < 1000)
        return -1; /* an ephemeral range reaching down here leaves no safe port */
    unsigned span = (unsigned)(hi - lo);
    if (next == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        next = 1 + ((unsigned)getpid() * 7919u + (unsigned)ts.tv_nsec) % span;
    }
    for (unsigned tries = 0; tries < span; tries++) {
        int port = lo + (int)(next++ % span);
        if (can_bind(port))
            return port;
    }
    return -1;
}
