/* harness.h: end-to-end test support: runs the real loyaltyd on free loopback ports with a
 * temporary data directory, and talks to it over real ZeroMQ sockets.
 *
 * Environment: LOYALTYD and LOYALTYCTL name the programs (ctest sets them); LT_KEEP keeps the
 * temp dirs; LOYALTYD_WRAPPER (e.g. "valgrind --error-exitcode=9") runs the daemon under
 * another program, and h_cleanup() then fails the test if the daemon's SIGTERM stop does not
 * exit 0 (`make valgrind`). */
#ifndef LT_HARNESS_H
#define LT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loyalty.pb-c.h"

typedef struct {
    char dir[256]; /* temporary directory: config, data/, daemon.log */
    char config[300];
    char data[300];
    char ingest[64], publish[64], query[64];
    char metrics[64]; /* HOST:PORT of the Prometheus endpoint */
    pid_t pid;
    void *zctx;
    void *dealer; /* a till */
    uint64_t next_batch_id;
} lt_daemon;

/* Optional CURVE identity for the harness's own sockets (till, queries), applied from the
 * next h_start/h_restart on; NULLs turn it off. Keys are Z85 (40 characters). */
void h_set_curve(const char *server_public, const char *client_public, const char *client_secret);
/* Applies that identity to a socket (no-op when off). */
void h_curve_client(void *sock);

/* Creates a temp dir and config (extra_yaml appended, may be NULL) and starts the daemon.
 * Aborts the test on failure. */
void h_start(lt_daemon *d, const char *extra_yaml);
/* Like h_start, but the daemon keeps its ledger in data_dir (which may already hold one, e.g.
 * a restored backup); the temp dir still holds the config and the log. h_cleanup does not
 * remove data_dir unless it is inside the temp dir. */
void h_start_data(lt_daemon *d, const char *data_dir, const char *extra_yaml);
/* Starts the daemon again on the same directory and ports. */
void h_restart(lt_daemon *d);
/* Sends sig and waits for exit; returns the exit status (or 128+signal). */
int h_stop(lt_daemon *d, int sig);
/* Stops (if running) and removes the temp dir. */
void h_cleanup(lt_daemon *d);

/* Sends one EventBatch (batch_id is set here) and waits for its AckBatch (timeout_ms).
 * Caller frees the reply with loyalty__ack_batch__free_unpacked(r, NULL). NULL on timeout. */
Loyalty__AckBatch *h_send(lt_daemon *d, Loyalty__EventBatch *b, int timeout_ms);
/* Sends raw bytes as one till message and waits for the reply. */
Loyalty__AckBatch *h_send_raw(lt_daemon *d, const void *bytes, size_t len, int timeout_ms);
/* Queries the query endpoint. Caller frees with loyalty__query_reply__free_unpacked. */
Loyalty__QueryReply *h_query(lt_daemon *d, Loyalty__Query *q, int timeout_ms);
Loyalty__QueryReply *h_member(lt_daemon *d, const char *member_id);
/* The member's balance (the test aborts if the member is unknown). */
int64_t h_balance(lt_daemon *d, const char *member_id);
/* Runs loyaltyctl with the daemon's endpoints and data dir; output into out. Returns the exit
 * status. */
int h_ctl(lt_daemon *d, const char *args, char *out, size_t out_len);

/* Runs a shell command with stderr merged into stdout; output into out. Returns the exit
 * status (-1 if it did not exit normally). */
int h_run(const char *cmd, char *out, size_t out_len);

/* How many lines of the daemon's log (DIR/daemon.log) match `what` (a POSIX basic regular
 * expression, as grep takes), read directly: cheap enough to poll every few milliseconds. */
int h_log_count(lt_daemon *d, const char *what);

/* Runs loyaltyd once, on a temporary config file holding `yaml`, stopped after timeout_s if it
 * is still running; its output into out. Returns its exit status (124: it timed out). For
 * daemons a test expects to refuse to start. */
int h_daemon_once(const char *yaml, int timeout_s, char *out, size_t out_len);

/* HTTP GET on the metrics endpoint. Returns the status code (-1 on failure); the body goes into
 * out (NUL-terminated, truncated at out_len). */
int h_http_get(lt_daemon *d, const char *path, char *out, size_t out_len);
/* The value of one metric line "name value" in a /metrics body (name with its labels), or -1
 * if there is none. */
double h_metric(const char *body, const char *name);
/* `loyaltyctl verify` (the daemon's state equals a replay of its ledger, R30): fails the test,
 * with `when` and loyaltyctl's output, if it does not pass. */
void h_verify(lt_daemon *d, const char *when);

/* ---- building events (all strings are copied into a static pool per test) ---- */
int64_t h_now(void);
Loyalty__Event *h_event(uint64_t node, uint64_t eid, const char *member, int64_t at);
Loyalty__Event *h_sale(uint64_t node, uint64_t eid, const char *member, int64_t at,
                       int64_t redeem_points);
/* An enrolment (R4: card and referrer may be NULL) and a card link (R4; R7 when replaces is
 * not NULL), freed with the other events by h_free_events(). */
Loyalty__Event *h_enrol(uint64_t node, uint64_t eid, const char *member, const char *card,
                        const char *referrer, int64_t at);
Loyalty__Event *h_card_link(uint64_t node, uint64_t eid, const char *member, const char *card,
                            const char *replaces, int64_t at);
/* Adds a line to a sale event. */
void h_line(Loyalty__Event *e, const char *sku, const char *category, int64_t qty,
            int64_t unit_list, int64_t unit_paid, uint32_t flags);
Loyalty__EventBatch *h_batch(size_t n, Loyalty__Event **events);
/* Frees everything h_* allocated for events and batches. */
void h_free_events(void);

#endif
