/* notifier.c -- the article's Notifier.Handle, line for line.
 *
 * The C# it mirrors, from the article (our copy of the article cuts off the
 * last arguments of SendAsync and CloseAsync; they are filled in here as the
 * .NET API defines them):
 *
 *     var buffer = new byte[1024 * 4];
 *     var receiveResult = await ws.ReceiveAsync(
 *         new ArraySegment<byte>(buffer), CancellationToken.None);
 *
 *     while (!receiveResult.CloseStatus.HasValue)
 *     {
 *         await ws.SendAsync(
 *             new ArraySegment<byte>(buffer, 0, receiveResult.Count),
 *             receiveResult.MessageType,
 *             receiveResult.EndOfMessage,
 *             CancellationToken.None);
 *
 *         receiveResult = await ws.ReceiveAsync(
 *             new ArraySegment<byte>(buffer), CancellationToken.None);
 *     }
 *
 *     await ws.CloseAsync(
 *         receiveResult.CloseStatus.Value,
 *         receiveResult.CloseStatusDescription,
 *         CancellationToken.None);
 *
 * Where C# would throw an exception, our calls return -1, and we return too.
 */
#include "notifier.h"

#include <stdint.h>

int notifier_handle(struct ws *ws)
{
    /* The article's 4 KiB are on .NET's heap; ours are on the thread's stack,
     * where 4 KiB cost every idle connection a third page of memory and 2 KiB
     * keep it to two (chapter "Ten thousand at once"). */
    uint8_t buffer[1024 * 2];
    struct ws_receive_result receive_result;
    if (ws_receive(ws, buffer, sizeof buffer, &receive_result) != 0)
        return -1;

    while (receive_result.close_status == WS_CLOSE_NONE) {
        if (ws_send(ws, buffer, receive_result.count, receive_result.message_type,
                    receive_result.end_of_message) != 0)
            return -1;

        if (ws_receive(ws, buffer, sizeof buffer, &receive_result) != 0)
            return -1;
    }

    return ws_close(ws, receive_result.close_status, receive_result.close_description);
}
