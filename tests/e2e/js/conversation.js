// One side of a conversation through Myelin, driven by matrix-js-sdk
// (tests/e2e/test_js_sdk.py runs it and plays the other side).
//
//   node conversation.js <base_url> <user_id> <password> <room_id> <other_user_id> [--receipts-and-typing]
//
// Logs in, starts the client, waits for the first sync (PREPARED), joins the
// room, sends a message, waits for the other user's message to arrive
// through sync, and with --receipts-and-typing sends a read receipt for it
// and a typing notification. No end-to-end encryption: the crypto stack is
// never initialised.
//
// stdout carries one JSON object per line, for the test: {"event": "prepared"},
// {"event": "sent", ...}, ..., and last {"event": "done", ...} or
// {"event": "error", ...}. Every request the SDK made is in the last line.
// The SDK's own logging goes to stderr.

const TIMEOUT_MS = Number(process.env.JS_SDK_TIMEOUT_MS ?? 90000);

// The SDK logs through console.* at call time: keep stdout for the test.
for (const method of ["log", "info", "debug", "warn", "trace"]) {
  console[method] = (...args) => console.error(...args);
}

function emit(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

const [baseUrl, userId, password, roomId, otherUserId, ...flags] = process.argv.slice(2);
if (!otherUserId) {
  emit({ event: "error", message: "usage: conversation.js <base_url> <user_id> <password> <room_id> <other_user_id>" });
  process.exit(2);
}
const receiptsAndTyping = flags.includes("--receipts-and-typing");

// Every request the SDK makes, so a failure shows which endpoint it tripped on.
const requests = [];
async function recordingFetch(input, init) {
  const url = new URL(input instanceof Request ? input.url : input.toString());
  const method = init?.method ?? (input instanceof Request ? input.method : "GET");
  const entry = { method, path: url.pathname, status: null };
  requests.push(entry);
  try {
    const response = await fetch(input, init);
    entry.status = response.status;
    return response;
  } catch (error) {
    entry.status = `failed: ${error}`;
    throw error;
  }
}

function finish(record, code) {
  // A long poll still open when the client stops (status null, or aborted) is not a failure.
  const failed = requests.filter((r) => (typeof r.status === "number" && r.status >= 400)
    || (typeof r.status === "string" && !r.status.includes("AbortError")));
  emit({ ...record, requests, failed_requests: failed });
  process.exit(code);
}

const watchdog = setTimeout(() => finish({ event: "error", message: `timed out after ${TIMEOUT_MS} ms` }, 1), TIMEOUT_MS);

async function until(condition) {
  while (!condition()) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function main() {
  const sdk = await import("matrix-js-sdk");

  const loginClient = sdk.createClient({ baseUrl, fetchFn: recordingFetch });
  const login = await loginClient.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: userId },
    password,
    initial_device_display_name: "matrix-js-sdk e2e",
  });
  emit({ event: "logged_in", user_id: login.user_id, device_id: login.device_id });

  const client = sdk.createClient({
    baseUrl,
    accessToken: login.access_token,
    userId: login.user_id,
    deviceId: login.device_id,
    fetchFn: recordingFetch,
    timelineSupport: true,
  });

  const syncStates = [];
  const prepared = new Promise((resolve) => {
    client.on(sdk.ClientEvent.Sync, (state) => {
      syncStates.push(state);
      if (state === "PREPARED") resolve();
    });
  });
  await client.startClient({ initialSyncLimit: 20 });
  await prepared;
  emit({ event: "prepared", sync_states: syncStates });

  await client.joinRoom(roomId);
  emit({ event: "joined", room_id: roomId });

  // Listen before sending, so the other side's answer cannot slip past.
  const theirMessage = new Promise((resolve) => {
    client.on(sdk.RoomEvent.Timeline, (event, room) => {
      if (room?.roomId === roomId && event.getSender() === otherUserId && event.getType() === "m.room.message") {
        resolve(event);
      }
    });
  });
  const sent = await client.sendTextMessage(roomId, "hello from matrix-js-sdk");
  emit({ event: "sent", event_id: sent.event_id });

  // The message comes back through sync (the remote echo replaces the local one).
  await until(() => client.getRoom(roomId)?.getLiveTimeline().getEvents()
    .some((event) => event.getId() === sent.event_id && !event.status));
  emit({ event: "echoed", event_id: sent.event_id });

  const received = await theirMessage;
  emit({ event: "received", event_id: received.getId(), body: received.getContent().body });

  if (receiptsAndTyping) {
    await client.sendReadReceipt(received);
    await client.sendTyping(roomId, true, 30000);
    emit({ event: "receipt_and_typing_sent", receipt_for: received.getId() });
  }

  client.stopClient();
  clearTimeout(watchdog);
  finish({ event: "done", sync_states: syncStates }, 0);
}

main().catch((error) => finish({ event: "error", message: String(error?.stack ?? error) }, 1));
