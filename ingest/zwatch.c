/* zwatch.c: a ZeroMQ socket on a libuv loop.
 *
 * ZMQ_FD becomes readable on an edge: when the socket's state changes, not while messages wait.
 * So after every wake-up we drain until ZMQ_EVENTS has no POLLIN, and because a send can also
 * consume the edge, zwatch_after_send() re-checks. Draining is bounded per loop turn (budget),
 * and a uv_idle handle carries on in the next turn so timers and other sockets are not starved.
 */
#include <zmq.h>

#include "ingest.h"

#define ZWATCH_BUDGET 256

bool zsock_readable(void *sock)
{
    int events = 0;
    size_t len = sizeof events;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &events, &len) != 0)
        return false;
    return (events & ZMQ_POLLIN) != 0;
}

static void on_idle(uv_idle_t *h);

static void drain(zwatch *w)
{
    if (w->paused || w->closing)
        return;
    w->on_read(w, ZWATCH_BUDGET);
    if (!w->paused && !w->closing && zsock_readable(w->sock))
        uv_idle_start(&w->idle, on_idle);
}

static void on_idle(uv_idle_t *h)
{
    zwatch *w = h->data;
    uv_idle_stop(h);
    drain(w);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)events;
    zwatch *w = h->data;
    if (status < 0)
        return; /* the fd is ZeroMQ's own signalling pipe: errors there are not ours to fix */
    drain(w);
}

int zwatch_start(uv_loop_t *loop, zwatch *w, void *sock, zwatch_read_cb on_read, void *data)
{
    int fd;
    size_t len = sizeof fd;
    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &len) != 0)
        return UV_EINVAL;
    w->sock = sock;
    w->on_read = on_read;
    w->data = data;
    w->paused = false;
    w->closing = false;
    int rc = uv_poll_init(loop, &w->poll, fd);
    if (rc != 0)
        return rc;
    w->poll.data = w;
    uv_idle_init(loop, &w->idle);
    w->idle.data = w;
    rc = uv_poll_start(&w->poll, UV_READABLE, on_poll);
    if (rc != 0)
        return rc;
    /* messages may already be queued: ZMQ_FD would not signal them again */
    uv_idle_start(&w->idle, on_idle);
    return 0;
}

void zwatch_pause(zwatch *w)
{
    w->paused = true;
    uv_idle_stop(&w->idle);
}

void zwatch_resume(zwatch *w)
{
    if (!w->paused || w->closing)
        return;
    w->paused = false;
    uv_idle_start(&w->idle, on_idle);
}

void zwatch_after_send(zwatch *w)
{
    if (!w->paused && !w->closing && zsock_readable(w->sock))
        uv_idle_start(&w->idle, on_idle);
}

void zwatch_close(zwatch *w)
{
    if (w->closing)
        return;
    w->closing = true;
    uv_idle_stop(&w->idle);
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, NULL);
    uv_close((uv_handle_t *)&w->idle, NULL);
}
