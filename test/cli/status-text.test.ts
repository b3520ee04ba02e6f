/** `xl-ha status` as text: the operator's figures, waiting and alerts named, each domain's story. */
import t from 'tap';
import { formatStatus } from '../../src/cli/main.js';

t.test('status text: figures, a domain waiting for its peer, an alert, the history', async (t) => {
  const out = formatStatus({
    host: 'b',
    backend: 'sim',
    protections: [
      { domain: 'web', mode: 'remus', state: 'protected', peer: '10.0.0.1:7720', epoch: 812, checkpointsPerSec: 39.8, lastAckAgeMs: 21, pauseMsP99: 4.2, bytesPerSec: 3_500_000, history: [{ at: '2026-12-02T06:01:12.311Z', event: 'failed over here', detail: 'from a' }, { at: '2026-12-02T06:01:19.870Z', event: 're-protected', detail: 'to 10.0.0.1:7720' }] },
      { domain: 'db', mode: 'remus', state: 'waiting-for-peer', peer: '10.0.0.3:7720', waiting: { attempts: 3, lastError: 'cannot connect to 10.0.0.3:7720: ECONNREFUSED', nextAttemptInMs: 3900 } },
    ],
    replicas: [{ domain: 'app', mode: 'remus', state: 'replicating', primary: 'a', epoch: 77 }],
    unprotected: [{ domain: 'twin', at: '2026-12-02T06:00:00.000Z', reason: '2 cfgs are named twin' }],
  });
  t.match(out, /^host b \(backend sim\)\n/);
  t.match(out, /Name\s+Role\s+Mode\s+State\s+Peer\s+Epoch\s+Ckpt\/s\s+Ack age\s+Pause p99\s+Bytes\/s/);
  t.match(out, /\nweb\s+primary\s+remus\s+protected\s+10\.0\.0\.1:7720\s+812\s+39\.8\s+0\.0s\s+4\.2ms\s+3\.3M\n/);
  t.match(out, /\ndb\s+primary\s+remus\s+waiting-for-peer\s+10\.0\.0\.3:7720\s+-\s+-\s+-\s+-\s+-\n/, 'missing figures are -');
  t.match(out, /\napp\s+backup\s+remus\s+replicating\s+a\s+77/);
  t.match(out, /db: waiting for peer 10\.0\.0\.3:7720: 3 attempt\(s\), last error: cannot connect to 10\.0\.0\.3:7720: ECONNREFUSED; next in 4 s/);
  t.match(out, /ALERT twin runs UNPROTECTED \(since 2026-12-02T06:00:00\.000Z\): 2 cfgs are named twin/);
  t.match(out, /History:\nweb: failed over here at 2026-12-02T06:01:12\.311Z \(from a\); re-protected at 2026-12-02T06:01:19\.870Z \(to 10\.0\.0\.1:7720\)/);
});
