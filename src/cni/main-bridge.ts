// Entry of the podnet-bridge executable (bundled into dist/cni-bin/podnet-bridge).
import { main } from './skel.ts';
import { bridgePlugin } from './bridge.ts';

await main(bridgePlugin);
