/* auth.h: who may connect: ZeroMQ CURVE with a ZAP handler and an allowlist.
 *
 * CURVE alone encrypts but admits any key; the ZAP handler (a thread answering libzmq's
 * authentication requests on inproc://zeromq.zap.01) admits only keys on the allowlist and
 * names what each may do in the connection's User-Id, which every received message carries:
 * "nodes:7,8" for a till that may submit events for node ids 7 and 8, "client" for a subscriber
 * or query client. The allowlist reloads on SIGHUP.
 *
 * Allowlist file, one entry a line; a line starting with '#' is a comment (only whole lines:
 * '#' can occur in a Z85 key):
 *   till   <Z85 public key, 40 chars>  <node_id>[,<node_id>...]
 *   client <Z85 public key>
 */
#ifndef LT_AUTH_H
#define LT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_DOMAIN_INGEST "ingest" /* tills only */
#define AUTH_DOMAIN_QUERY "query"   /* tills and clients */
#define AUTH_DOMAIN_PUBLISH "publish"
#define AUTH_NODES_MAX 64 /* node ids per till key */

typedef struct auth auth;

/* Loads the allowlist and starts the ZAP handler in zctx. Returns 0 and *out (caller owns:
 * auth_stop()), or -1 with "FILE:LINE: ..." in err. */
int auth_start(void *zctx, const char *allowlist_path, auth **out, char *err, size_t err_len);
/* Reloads the allowlist file; on error the old list stays. Returns 0 or -1 with err. */
int auth_reload(auth *a, char *err, size_t err_len);
/* Stops the handler and frees. Safe on NULL. */
void auth_stop(auth **a);
/* Keys on the list. */
size_t auth_keys(auth *a);

/* Reads a Z85 secret key (the first 40 characters of the file). Returns 0 or -1 with err. */
int auth_read_secret(const char *path, char out[41], char *err, size_t err_len);

/* Whether a message's User-Id (set by the handler) allows events for node_id. */
bool auth_node_allowed(const char *user_id, uint64_t node_id);

/* Whether an endpoint only listens on this machine (loopback, ipc, inproc). */
bool auth_endpoint_is_local(const char *endpoint);

#endif
