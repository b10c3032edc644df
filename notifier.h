/* notifier.h -- the application: the article's Notifier class.
 *
 * It knows nothing of sockets or frames; it only receives and sends
 * messages through ws.h, as the article's Notifier only uses WebSocket.
 */
#ifndef NOTIFIER_H
#define NOTIFIER_H

#include "ws.h"

/* The article's Notifier.Handle(WebSocket ws): echoes every message back to
 * the client until the client closes, then completes the closing handshake
 * with the client's own status and description. Returns 0 after a clean
 * close, -1 if the connection failed (where .NET would throw). */
int notifier_handle(struct ws *ws);

#endif
