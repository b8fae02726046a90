// Real end-to-end encryption through Myelin with matrix-js-sdk's Rust crypto
// (tests/e2e/test_js_e2ee.py runs it).
//
//   node encrypted.js <alice_base_url> <alice_user_id> <bob_base_url> <bob_user_id> <password>
//
// Alice and Bob (accounts made by the test, same password; on one server, or
// on two that federate) log in, start
// their clients with Rust crypto (in memory), and:
//   1. Alice creates an encrypted room and invites Bob, who joins;
//   2. each sends a message the other decrypts (Olm key sharing over
//      /keys/claim and /sendToDevice, Megolm in the room);
//   3. Bob logs in a second device, which decrypts what Alice sends after;
//   4. Alice bootstraps cross-signing (keys and signatures uploaded); Bob
//      sees her cross-signing keys and her device signed by her.
//
// stdout carries one JSON object per line for the test ({"event": ...});
// the last is {"event": "done", ...} or {"event": "error", ...}, with every
// failed request the SDK made. The SDK's own logging goes to stderr.

const TIMEOUT_MS = Number(process.env.JS_SDK_TIMEOUT_MS ?? 150000);

for (const method of ["log", "info", "debug", "warn", "trace"]) {
  console[method] = (...args) => console.error(...args);
}

function emit(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

const [aliceBaseUrl, aliceId, bobBaseUrl, bobId, password] = process.argv.slice(2);
if (!password) {
  emit({ event: "error",
    message: "usage: encrypted.js <alice_base_url> <alice_user_id> <bob_base_url> <bob_user_id> <password>" });
  process.exit(2);
}

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

const clients = [];
function finish(record, code) {
  for (const client of clients) client.stopClient();
  // 404s the SDK expects (no key backup, no secret storage, no dehydrated
  // device) are answers, not failures.
  const failed = requests.filter((r) => (typeof r.status === "number" && r.status >= 400 && r.status !== 404)
    || (typeof r.status === "string" && !r.status.includes("AbortError")));
  emit({ ...record, failed_requests: failed, request_count: requests.length });
  process.exit(code);
}

const watchdog = setTimeout(() => finish({ event: "error", message: `timed out after ${TIMEOUT_MS} ms` }, 1),
  TIMEOUT_MS);

async function until(what, condition, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

let sdk;

async function start(baseUrl, userId, deviceName) {
  const loginClient = sdk.createClient({ baseUrl, fetchFn: recordingFetch });
  const login = await loginClient.loginRequest({
    type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password,
    initial_device_display_name: deviceName,
  });
  const client = sdk.createClient({
    baseUrl, accessToken: login.access_token, userId: login.user_id, deviceId: login.device_id,
    fetchFn: recordingFetch, timelineSupport: true,
  });
  clients.push(client);
  await client.initRustCrypto({ useIndexedDB: false });
  const prepared = new Promise((resolve) => {
    client.on(sdk.ClientEvent.Sync, (state) => { if (state === "PREPARED") resolve(); });
  });
  await client.startClient({ initialSyncLimit: 20 });
  await prepared;
  emit({ event: "started", user_id: userId, device_id: login.device_id, device_name: deviceName });
  return client;
}

// Waits until `client` has decrypted the event `eventId` of `roomId`; answers its body.
async function decrypted(client, roomId, eventId, who) {
  return until(`${who} to decrypt ${eventId}`, async () => {
    const room = client.getRoom(roomId);
    const event = room?.getLiveTimeline().getEvents().find((e) => e.getId() === eventId)
      ?? room?.findEventById(eventId);
    if (!event) return null;
    if (event.isBeingDecrypted() || event.shouldAttemptDecryption()) return null;
    if (event.isDecryptionFailure()) {
      // The room key may come later (a to-device message): try again.
      await client.decryptEventIfNeeded(event, { isRetry: true });
      return null;
    }
    if (!event.isEncrypted()) throw new Error(`${eventId} was not encrypted`);
    return event.getContent().body;
  }, 90000);
}

async function sendText(client, roomId, text) {
  const sent = await client.sendTextMessage(roomId, text);
  return sent.event_id;
}

async function main() {
  sdk = await import("matrix-js-sdk");
  const alice = await start(aliceBaseUrl, aliceId, "alice laptop");
  const bob = await start(bobBaseUrl, bobId, "bob phone");

  // 1. An encrypted room.
  const { room_id: roomId } = await alice.createRoom({
    invite: [bobId],
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
  });
  await until("bob's invite", () => bob.getRoom(roomId));
  // Through Alice's server when Bob is on another one.
  await bob.joinRoom(roomId, { viaServers: [aliceId.slice(aliceId.indexOf(":") + 1)] });
  await until("alice to see bob joined", () => alice.getRoom(roomId)?.getMember(bobId)?.membership === "join");
  await until("the room to be encrypted for both", async () =>
    (await alice.getCrypto().isEncryptionEnabledInRoom(roomId)) && (await bob.getCrypto().isEncryptionEnabledInRoom(roomId)));
  emit({ event: "room", room_id: roomId });

  // 2. Each decrypts the other's message.
  const first = await sendText(alice, roomId, "hello bob, this is secret");
  const firstBody = await decrypted(bob, roomId, first, "bob");
  emit({ event: "bob_decrypted", event_id: first, body: firstBody });
  const reply = await sendText(bob, roomId, "hello alice, secret too");
  const replyBody = await decrypted(alice, roomId, reply, "alice");
  emit({ event: "alice_decrypted", event_id: reply, body: replyBody });

  // 3. Bob's second device decrypts what is sent after it logged in.
  const bob2 = await start(bobBaseUrl, bobId, "bob tablet");
  await until("alice to know bob's second device", async () => {
    const devices = await alice.getCrypto().getUserDeviceInfo([bobId], true);
    return devices.get(bobId)?.has(bob2.getDeviceId());
  });
  const later = await sendText(alice, roomId, "for both of bob's devices");
  const onSecond = await decrypted(bob2, roomId, later, "bob's second device");
  const onFirst = await decrypted(bob, roomId, later, "bob's first device");
  emit({ event: "second_device_decrypted", event_id: later, body: onSecond, first_device_body: onFirst });

  // 4. Alice bootstraps cross-signing; Bob sees it.
  await alice.getCrypto().bootstrapCrossSigning({
    authUploadDeviceSigningKeys: async (makeRequest) => {
      await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: aliceId }, password });
    },
  });
  const aliceStatus = await alice.getCrypto().getCrossSigningStatus();
  emit({ event: "cross_signing_bootstrapped", status: aliceStatus });
  await until("bob to see alice's cross-signing keys", () => bob.getCrypto().userHasCrossSigningKeys(aliceId, true));
  const deviceStatus = await until("bob to see alice's device signed by her", async () => {
    // Asking again makes the SDK download alice's keys when her device list changed.
    await bob.getCrypto().getUserDeviceInfo([aliceId], true);
    const status = await bob.getCrypto().getDeviceVerificationStatus(aliceId, alice.getDeviceId());
    return status?.signedByOwner ? status : null;
  });
  const masterKey = await alice.getCrypto().getCrossSigningKeyId();
  emit({ event: "cross_signing_seen", signed_by_owner: deviceStatus.signedByOwner, master_key: masterKey });

  clearTimeout(watchdog);
  finish({
    event: "done", room_id: roomId,
    bodies: { bob: firstBody, alice: replyBody, bob_second_device: onSecond, bob_first_device: onFirst },
  }, 0);
}

main().catch((error) => finish({ event: "error", message: String(error?.stack ?? error) }, 1));
