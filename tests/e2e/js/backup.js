// Server-side key backup through Myelin with matrix-js-sdk's Rust crypto
// (tests/e2e/test_js_e2ee.py runs it).
//
//   node backup.js <base_url> <user_id> <password>
//
// The user logs in, sends an encrypted message, and sets up secret storage
// and key backup (bootstrapSecretStorage: account data, POST
// /room_keys/version, then the SDK uploads the room keys with PUT
// /room_keys/keys). A second device logs in afterwards, reads the backup key
// from secret storage, restores the backup (GET /room_keys/keys) and
// decrypts the message sent before it existed.
//
// stdout: one JSON object per line; the last is {"event": "done", ...} or
// {"event": "error", ...}.

const TIMEOUT_MS = Number(process.env.JS_SDK_TIMEOUT_MS ?? 150000);

for (const method of ["log", "info", "debug", "warn", "trace"]) {
  console[method] = (...args) => console.error(...args);
}

function emit(record) {
  process.stdout.write(JSON.stringify(record) + "\n");
}

const [baseUrl, userId, password] = process.argv.slice(2);
if (!password) {
  emit({ event: "error", message: "usage: backup.js <base_url> <user_id> <password>" });
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
  const failed = requests.filter((r) => (typeof r.status === "number" && r.status >= 400 && r.status !== 404)
    || (typeof r.status === "string" && !r.status.includes("AbortError")));
  const backupCalls = [...new Set(requests.filter((r) => r.path.includes("/room_keys/"))
    .map((r) => `${r.method} ${r.path.replace(/\/room_keys\/.*/, (p) => p.split("?")[0])} -> ${r.status}`))];
  emit({ ...record, failed_requests: failed, backup_calls: backupCalls });
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
// The secret storage key, made by the first device and known to the second
// (as if the user typed their recovery key).
let secretStorageKey = null;

async function start(deviceName) {
  const loginClient = sdk.createClient({ baseUrl, fetchFn: recordingFetch });
  const login = await loginClient.loginRequest({
    type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password,
    initial_device_display_name: deviceName,
  });
  const client = sdk.createClient({
    baseUrl, accessToken: login.access_token, userId: login.user_id, deviceId: login.device_id,
    fetchFn: recordingFetch, timelineSupport: true,
    cryptoCallbacks: {
      getSecretStorageKey: async ({ keys }) => {
        const keyId = Object.keys(keys).find((id) => secretStorageKey && id === secretStorageKey.keyId)
          ?? Object.keys(keys)[0];
        return [keyId, secretStorageKey.privateKey];
      },
      cacheSecretStorageKey: (keyId, _keyInfo, privateKey) => {
        secretStorageKey = { keyId, privateKey };
      },
    },
  });
  clients.push(client);
  await client.initRustCrypto({ useIndexedDB: false });
  const prepared = new Promise((resolve) => {
    client.on(sdk.ClientEvent.Sync, (state) => { if (state === "PREPARED") resolve(); });
  });
  await client.startClient({ initialSyncLimit: 20 });
  await prepared;
  emit({ event: "started", device_id: login.device_id, device_name: deviceName });
  return { client, accessToken: login.access_token };
}

async function currentBackup(accessToken) {
  const response = await fetch(`${baseUrl}/_matrix/client/v3/room_keys/version`, {
    headers: { Authorization: `Bearer ${accessToken}` },
  });
  return response.status === 200 ? response.json() : null;
}

async function decrypted(client, roomId, eventId) {
  return until(`to decrypt ${eventId}`, async () => {
    const room = client.getRoom(roomId);
    const event = room?.getLiveTimeline().getEvents().find((e) => e.getId() === eventId)
      ?? room?.findEventById(eventId);
    if (!event || event.isBeingDecrypted() || event.shouldAttemptDecryption()) return null;
    if (event.isDecryptionFailure()) {
      await client.decryptEventIfNeeded(event, { isRetry: true });
      return null;
    }
    if (!event.isEncrypted()) throw new Error(`${eventId} was not encrypted`);
    return event.getContent().body;
  }, 60000);
}

async function main() {
  sdk = await import("matrix-js-sdk");
  const first = await start("first device");
  const { room_id: roomId } = await first.client.createRoom({
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
  });
  await until("the room to be encrypted", () => first.client.getCrypto().isEncryptionEnabledInRoom(roomId));
  const { event_id: eventId } = await first.client.sendTextMessage(roomId, "kept in the key backup");
  emit({ event: "sent", event_id: eventId });

  const crypto = first.client.getCrypto();
  await crypto.bootstrapSecretStorage({
    createSecretStorageKey: async () => crypto.createRecoveryKeyFromPassphrase(),
    setupNewSecretStorage: true,
    setupNewKeyBackup: true,
  });
  const version = await until("the client to use the new backup", () => crypto.getActiveSessionBackupVersion());
  emit({ event: "backup_enabled", version });
  // The SDK uploads the room keys in the background.
  const backup = await until("the room key in the backup", async () => {
    const found = await currentBackup(first.accessToken);
    return found && found.count >= 1 ? found : null;
  }, 90000);
  emit({ event: "backed_up", version: backup.version, count: backup.count, etag: backup.etag });

  const second = await start("second device");
  const secondCrypto = second.client.getCrypto();
  await secondCrypto.loadSessionBackupPrivateKeyFromSecretStorage();
  await secondCrypto.checkKeyBackupAndEnable();
  const restored = await secondCrypto.restoreKeyBackup();
  emit({ event: "restored", total: restored.total, imported: restored.imported });
  const body = await decrypted(second.client, roomId, eventId);
  emit({ event: "second_device_decrypted", body });

  clearTimeout(watchdog);
  finish({ event: "done", body, version: backup.version, restored }, 0);
}

main().catch((error) => finish({ event: "error", message: String(error?.stack ?? error) }, 1));
