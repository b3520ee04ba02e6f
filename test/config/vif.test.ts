/** vif specs read as xl reads them (xl-network-configuration(5), parse_nic_config, libxlu_vif.c). */
import t from 'tap';
import { parseVifSpec, VifSpecError, VIF_KEYS } from '../../src/config/vif.js';

t.test("the man page's examples", async (t) => {
  t.same(parseVifSpec('mac=00:16:3E:74:3d:76,model=rtl8139,bridge=xenbr0'), { vif: { mac: '00:16:3e:74:3d:76', model: 'rtl8139', bridge: 'xenbr0' }, warnings: [] });
  t.same(parseVifSpec('mac=00:16:3E:74:34:32'), { vif: { mac: '00:16:3e:74:34:32' }, warnings: [] });
  t.same(parseVifSpec(''), { vif: {}, warnings: [] }, "'' is a nic with every default");
});

t.test('every keyword', async (t) => {
  const { vif, warnings } = parseVifSpec(
    'mac=0:16:3e:a:b:c,bridge=xenbr1,gatewaydev=eth0,type=ioemu,model=e1000,vifname=web-eth0,script=vif-route,ip=10.0.0.5 10.0.0.6,backend=netdom,rate=1MB/s@20ms,devid=3,mtu=9000',
  );
  t.same(warnings, []);
  t.same(vif, {
    mac: '00:16:3e:0a:0b:0c',
    bridge: 'xenbr1',
    gatewaydev: 'eth0',
    type: 'ioemu',
    model: 'e1000',
    vifname: 'web-eth0',
    script: 'vif-route',
    ip: '10.0.0.5 10.0.0.6',
    backend: 'netdom',
    rate: { text: '1MB/s@20ms', bytesPerSec: 1_000_000, intervalUsecs: 20_000, bytesPerInterval: 20_000 },
    devid: 3,
    mtu: 9000,
  });
  t.equal(parseVifSpec('type=vif').vif.type, 'vif');
  t.same(parseVifSpec('forwarddev=eth1,colo_sock_mirror_port=9003,colo_checkpoint_host=h').vif, { colo: { forwarddev: 'eth1', colo_sock_mirror_port: '9003', colo_checkpoint_host: 'h' } });
  t.ok(VIF_KEYS.length > 50, 'the COLO keys are known');
});

t.test('rates as libxlu_vif.c reads them', async (t) => {
  const rate = (r: string) => parseVifSpec(`rate=${r}`).vif.rate;
  t.has(rate('10Mb/s'), { bytesPerSec: 1_250_000, intervalUsecs: 50_000, bytesPerInterval: 62_500 }, 'bits, default interval 50 ms');
  t.has(rate('250KB/s'), { bytesPerSec: 250_000 });
  t.has(rate('1GB/s'), { bytesPerSec: 1e9 });
  t.has(rate('8b/s'), { bytesPerSec: 1 });
  t.has(rate('100B/s@100us'), { intervalUsecs: 100 });
  t.has(rate('100B/s@2s'), { intervalUsecs: 2_000_000 });
  t.has(rate('100B/s@2'), { intervalUsecs: 2_000_000 }, 'an interval without a unit is in seconds (the code, whatever the man page says)');
  t.has(rate('010B/s'), { bytesPerSec: 8 }, 'a leading 0 is octal (strtoull base 0)');
});

t.test('spaces before a keyword and empty pieces are skipped; the last of a key wins', async (t) => {
  t.same(parseVifSpec('  bridge=xenbr0,, mac=00:16:3e:00:00:01,').vif, { bridge: 'xenbr0', mac: '00:16:3e:00:00:01' });
  t.equal(parseVifSpec('bridge=a,bridge=b').vif.bridge, 'b');
  t.equal(parseVifSpec('bridge=xenbr0 ').vif.bridge, 'xenbr0 ', 'a trailing blank stays (xl keeps it)');
});

t.test('what xl only warns about is a warning, and the rest of the spec is read', async (t) => {
  const r = parseVifSpec('bridge=xenbr0,vlan=10,trusted,netdev=eth1,accel=x,brige=xenbr1,devid=7abc');
  t.same(r.vif, { bridge: 'xenbr0', gatewaydev: 'eth1', devid: 7 });
  t.same(r.warnings, [
    'unknown vif parameter "vlan=10": xl warns "unrecognized argument" and ignores it; the vif keys are mac, bridge, gatewaydev, type, model, vifname, script, ip, backend, rate, devid, mtu, netdev, accel and COLO\'s colo_*',
    'unknown vif parameter "trusted": xl warns "unrecognized argument" and ignores it; the vif keys are mac, bridge, gatewaydev, type, model, vifname, script, ip, backend, rate, devid, mtu, netdev, accel and COLO\'s colo_*',
    'netdev=eth1 is deprecated: write gatewaydev=eth1',
    'accel=x is not supported by xl, which ignores it',
    'unknown vif parameter "brige=xenbr1" (did you mean bridge=?): xl warns "unrecognized argument" and ignores it; the vif keys are mac, bridge, gatewaydev, type, model, vifname, script, ip, backend, rate, devid, mtu, netdev, accel and COLO\'s colo_*',
    'devid=7abc: xl reads 7 and ignores "abc"',
  ]);
});

const BAD: [string, string][] = [
  ['mac=00:16:3e:zz:00:01', 'mac "00:16:3e:zz:00:01" is not a MAC address: expected six hex bytes separated by \':\', e.g. 00:16:3e:12:34:56 (xl would go on with a half-set address)'],
  ['mac=00:16:3e:00:01', 'mac "00:16:3e:00:01" is not a MAC address: expected six hex bytes separated by \':\', e.g. 00:16:3e:12:34:56 (xl would go on with a half-set address)'],
  ['mac=100:16:3e:00:00:01', 'mac "100:16:3e:00:00:01" is not a MAC address: expected six hex bytes separated by \':\', e.g. 00:16:3e:12:34:56 (xl would go on with a half-set address)'],
  ['type=netfront', 'unknown type "netfront": expected vif or ioemu (xl would ignore it and use the default)'],
  ['rate=10Mbit/s', 'invalid rate "10Mbit/s": expected RATE[@INTERVAL], RATE a number with B/s, KB/s, MB/s, GB/s (bytes) or b/s, Kb/s, Mb/s, Gb/s (bits), INTERVAL a number with us, ms or s (default 50ms), e.g. rate=10Mb/s@20ms'],
  ['rate=@20ms', 'no rate before the interval: expected RATE[@INTERVAL], RATE a number with B/s, KB/s, MB/s, GB/s (bytes) or b/s, Kb/s, Mb/s, Gb/s (bits), INTERVAL a number with us, ms or s (default 50ms), e.g. rate=10Mb/s@20ms'],
  ['rate=1MB/s@1h', 'invalid replenishment interval "1h": expected RATE[@INTERVAL], RATE a number with B/s, KB/s, MB/s, GB/s (bytes) or b/s, Kb/s, Mb/s, Gb/s (bits), INTERVAL a number with us, ms or s (default 50ms), e.g. rate=10Mb/s@20ms'],
  ['rate=0B/s', 'rate "0B/s" is out of range: expected 1 to 4294967295 per second before the unit'],
  ['rate=5000000000B/s', 'rate "5000000000B/s" is out of range: expected 1 to 4294967295 per second before the unit'],
  ['rate=1B/s@0ms', 'replenishment interval "0ms" is out of range'],
  ['rate=1B/s@5000s', 'replenishment interval "5000s" is out of range: at most 4294967295 microseconds'],
  ['mtu=big', 'mtu "big" is not a number: expected a non-negative integer'],
  ['devid=-1', 'devid "-1" is not a number: expected a non-negative integer'],
];

t.test('what xl refuses is refused, naming the spec and what is accepted', async (t) => {
  for (const [spec, reason] of BAD) {
    try {
      parseVifSpec(spec);
      t.fail(`accepted ${spec}`);
    } catch (err) {
      t.type(err, VifSpecError);
      t.equal((err as VifSpecError).reason, reason, spec);
      t.equal((err as Error).message, `invalid vif spec ${JSON.stringify(spec)}: ${reason}`);
    }
  }
});
