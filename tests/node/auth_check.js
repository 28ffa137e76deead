// The npm etcd3 client's auth, unchanged, against one endpoint started with a short simple-token
// TTL (argv[3] seconds): users and roles made through its user/role API, auth enabled, then
// permitted and denied operations as two users, a wrong password, a watch, a token that expires
// while idle (the client logs in again by itself) and a role revoked under a live token. Prints
// one JSON line of what it saw; tests/integration/test_node_client.py checks it.
'use strict';
const { Etcd3, Range } = require('etcd3');

const endpoint = process.argv[2];
const ttlSeconds = Number(process.argv[3]);
const timer = setTimeout(() => { console.error('timed out'); process.exit(2); }, 50000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// "ok", a value, or "<error class>: <message>" as the client raises it.
async function outcome(make) {
  try {
    const value = await make();
    return value === undefined ? 'ok' : value;
  } catch (err) {
    return `${err.constructor.name}: ${err.message}`;
  }
}

function login(username, password) {
  return new Etcd3({ hosts: endpoint, auth: { username, password } });
}

async function main() {
  const out = {};
  const admin = new Etcd3({ hosts: endpoint });
  await admin.user('root').create('pwd');
  await admin.user('root').addRole('root');
  const app = await admin.role('app').create();
  await app.grant({ permission: 'Readwrite', range: Range.prefix('/app/') });
  const reader = await admin.role('reader').create();
  await reader.grant({ permission: 'Read', range: Range.prefix('/app/') });
  await admin.user('alice').create('alicepw');
  await admin.user('alice').addRole('app');
  await admin.user('rita').create('ritapw');
  await admin.user('rita').addRole('reader');
  out.userExists = await outcome(() => admin.user('alice').create('again').then(() => 'ok'));
  out.roleExists = await outcome(() => admin.role('app').create().then(() => 'ok'));
  out.noSuchRole = await outcome(() => admin.user('alice').addRole('nosuch').then(() => 'ok'));
  out.users = (await admin.getUsers()).map((u) => u.name).sort();
  out.roles = (await admin.getRoles()).map((r) => r.name).sort();
  out.appPermissions = (await app.permissions()).map(
    (p) => `${p.permission} ${p.range.start.toString()} ${p.range.end.toString()}`,
  );
  out.aliceRoles = (await admin.user('alice').roles()).map((r) => r.name);
  await admin.auth.authEnable({});
  admin.close();

  const root = login('root', 'pwd');
  const alice = login('alice', 'alicepw');
  const rita = login('rita', 'ritapw');
  await root.put('/other/secret').value('s');
  out.alicePut = await outcome(() => alice.put('/app/a').value('1').then(() => 'ok'));
  out.aliceGet = await outcome(() => alice.get('/app/a').string());
  out.alicePrefix = await outcome(() => alice.getAll().prefix('/app/').keys());
  out.aliceGetDenied = await outcome(() => alice.get('/other/secret').string());
  out.alicePutDenied = await outcome(() => alice.put('/other/x').value('x').then(() => 'ok'));
  out.aliceTxnDenied = await outcome(() => alice
    .if('/other/secret', 'Value', '==', 's')
    .then(alice.put('/app/t').value('t'))
    .commit()
    .then((r) => r.succeeded));
  out.ritaGet = await outcome(() => rita.get('/app/a').string());
  out.ritaPutDenied = await outcome(() => rita.put('/app/a').value('2').then(() => 'ok'));
  out.aliceUserAddDenied = await outcome(() => alice.user('eve').create('x').then(() => 'ok'));
  out.wrongPassword = await outcome(() => login('alice', 'nope').get('/app/a').string());
  out.unknownUser = await outcome(() => login('mallory', 'pw').get('/app/a').string());
  out.noCredentials = await outcome(() => new Etcd3({ hosts: endpoint }).get('/app/a').string());

  const watcher = await alice.watch().prefix('/app/w').create();
  const event = new Promise((resolve) => watcher.on('put', (kv) => resolve(kv.key.toString())));
  await root.put('/app/w1').value('w');
  out.aliceWatch = await event;
  await watcher.cancel();

  // Idle past the token's TTL: the next call gets "invalid auth token" and the client logs in
  // again and retries.
  await sleep((ttlSeconds + 2) * 1000);
  out.aliceAfterIdle = await outcome(() => alice.get('/app/a').string());

  // A role revoked while alice's token lives: etcd checks the user's roles now, not the token's.
  await root.user('alice').removeRole('app');
  out.aliceAfterRevoke = await outcome(() => alice.get('/app/a').string());
  out.rootDisablesAuth = await outcome(() => root.auth.authDisable({}).then(() => 'ok'));
  for (const c of [root, alice, rita]) c.close();
  console.log(JSON.stringify(out));
}

main()
  .then(() => { clearTimeout(timer); process.exit(0); })
  .catch((err) => { console.error(err); process.exit(1); });
