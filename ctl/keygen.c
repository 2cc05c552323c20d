/* keygen.c: loyaltyctl keygen: a CURVE key pair for the daemon, a till or a client. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "ctl.h"

static const char usage[] =
    "usage: loyaltyctl keygen [PREFIX]\n"
    "\n"
    "Makes a CURVE key pair (Z85). Without PREFIX prints both keys. With PREFIX writes the\n"
    "secret key to PREFIX.key (mode 0600, refusing to overwrite) and the public key to\n"
    "PREFIX.pub, and prints the public key.\n"
    "\n"
    "The daemon's secret key file is curve_secret_key_file; its public key goes to every till\n"
    "and client. A till's public key goes on the daemon's allowlist (curve_allowlist_file) as\n"
    "\"till KEY NODE[,NODE...]\", a subscriber's or query client's as \"client KEY\"; the\n"
    "allowlist reloads on SIGHUP. See docs/security.md.\n"
    "\n"
    "exit status: 0 ok, 1 failure, 2 usage.\n";

static int write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) {
        ctl_errorf("keygen: %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = strlen(text);
    bool ok = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        ctl_errorf("keygen: %s: write failed", path);
        return -1;
    }
    return 0;
}

int ctl_cmd_keygen(ctl_globals *g, int argc, char **argv)
{
    (void)g;
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fputs(usage, stderr);
        return 2;
    }
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0) {
        ctl_errorf("keygen: CURVE is not available in this libzmq: %s", zmq_strerror(zmq_errno()));
        return 1;
    }
    if (argc == 1) {
        printf("public %s\nsecret %s\n", pub, sec);
        return 0;
    }
    char path[4096], text[64];
    snprintf(text, sizeof text, "%s\n", sec);
    if ((size_t)snprintf(path, sizeof path, "%s.key", argv[1]) >= sizeof path ||
        write_file(path, text, 0600) != 0)
        return 1;
    snprintf(text, sizeof text, "%s\n", pub);
    snprintf(path, sizeof path, "%s.pub", argv[1]);
    if (write_file(path, text, 0644) != 0)
        return 1;
    printf("%s\n", pub);
    return 0;
}
