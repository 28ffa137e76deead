// The npm etcd3 client (on @grpc/grpc-js), unchanged, against one endpoint: KV, txn, lease,
// watch, an error. Prints one JSON line of what it saw; tests/integration/test_node_client.py
// checks it. With ETCD3_TLS_CA, ETCD3_TLS_CERT and ETCD3_TLS_KEY set it dials https with that CA
// and client certificate (tests/integration/test_client_tls.py).
'use strict';
const fs = require('fs');
const { Etcd3 } = require('etcd3');

const endpoint = process.argv[2];

function tlsOptions() {
  const { ETCD3_TLS_CA: ca, ETCD3_TLS_CERT: cert, ETCD3_TLS_KEY: key } = process.env;
  if (!ca) return {};
  return {
    credentials: {
      rootCertificate: fs.readFileSync(ca),
      certChain: fs.readFileSync(cert),
      privateKey: fs.readFileSync(key),
    },
  };
}
const timer = setTimeout(() => { console.error('timed out'); process.exit(2); }, 30000);

async function main() {
  const client = new Etcd3({ hosts: endpoint, ...tlsOptions() });
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
