// Entry of the podnet-ipam executable (bundled into dist/cni-bin/podnet-ipam).
import { main } from '../cni/skel.ts';
import { ipamPlugin } from './plugin.ts';

await main(ipamPlugin);
