/**
 * What the daemon compares with a cfg found by name: libxl's own memory and vcpus (its stored
 * JSON), not Xen's max_memory, which libxl pads (memory = 128 ran with 129 MiB in the lab).
 */
import t from 'tap';
import { libxlSizes } from '../../src/backend/xen/host.js';

t.test('memory and vcpus from libxl JSON', async (t) => {
  t.same(libxlSizes(JSON.stringify({ c_info: { name: 'domu1' }, b_info: { max_vcpus: 2, max_memkb: 262144, target_memkb: 131072 } })), { memoryMiB: 128, vcpus: 2 }, 'target_memkb is the cfg\'s memory');
  t.same(libxlSizes(JSON.stringify({ b_info: { max_memkb: 131072 } })), { memoryMiB: 128 }, 'max_memkb when there is no target');
  t.same(libxlSizes(JSON.stringify({ c_info: {} })), {}, 'nothing there: nothing claimed');
  t.same(libxlSizes('not json'), {});
  t.same(libxlSizes(JSON.stringify({ b_info: { target_memkb: 'x', max_vcpus: -1 } })), {}, 'nonsense is ignored, not trusted');
});
