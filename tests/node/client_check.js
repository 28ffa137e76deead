// The npm etcd3 client (on @grpc/grpc-js), unchanged, against one endpoint: KV, txn, lease,
// watch, an error. Prints one JSON line of what it saw; tests/integration/test_node_client.py
// checks it.
'use strict';
const { Etcd3 } = require('etcd3');

const endpoint = process.argv[2];
const timer = setTimeout(() => { console.error('timed out'); process.exit(2); }, 30000);

async function main() {
  const client = new Etcd3({ hosts: endpoint });
  const out = {};
  await client.put('/registry/pods/a').value('1');
  await client.put('/registry/pods/b').value('2');
  out.get = await client.get('/registry/pods/a').string();
  out.prefix = await client.getAll().prefix('/registry/pods/').strings();
  out.count = await client.getAll().prefix('/registry/').count();
  const txn = await client
    .if('/registry/pods/a', 'Value', '==', '1')
    .then(client.put('/registry/pods/a').value('11'))
    .else(client.put('/registry/pods/a').value('lost'))
    .commit();
  out.txnSucceeded = txn.succeeded;
  out.afterTxn = await client.get('/registry/pods/a').string();

  const lease = client.lease(30);
  await lease.put('/registry/leases/l').value('v');
  out.leasedBeforeRevoke = await client.get('/registry/leases/l').string();
  await lease.revoke();
  out.leasedAfterRevoke = await client.get('/registry/leases/l').string();

  const watcher = await client.watch().prefix('/registry/nodes/').create();
  const events = [];
  const allSeen = new Promise((resolve) => {
    watcher.on('put', (kv) => {
      events.push(`${kv.key.toString()}=${kv.value.toString()}`);
      if (events.length === 3) resolve();
    });
  });
  for (let i = 0; i < 3; i++) {
    await client.put(`/registry/nodes/n${i}`).value(`${i}`);
  }
  await allSeen;
  out.watchEvents = events;
  await watcher.cancel();

  out.deleted = Number((await client.delete().prefix('/registry/pods/')).deleted);
  try {
    await client.get('/registry/pods/a').revision(1000000).string();
    out.futureRevisionError = null;
  } catch (err) {
    out.futureRevisionError = err.message;
  }
  client.close();
  console.log(JSON.stringify(out));
}

main()
  .then(() => { clearTimeout(timer); })
  .catch((err) => { console.error(err); process.exit(1); });
