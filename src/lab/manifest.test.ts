import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseManifests } from './manifest.ts';

const pod = (extra = '') => `apiVersion: v1
kind: Pod
metadata:
  name: web
${extra}spec:
  containers:
  - name: c
    command: ["sleep", "1000"]
`;

describe('lab manifests', () => {
  test('a multi-document file gives every object, with namespace defaulted', () => {
    const out = parseManifests(`apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
${pod()}---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, command: [sleep, "1"]}]}
---
`);
    assert.deepEqual(out.map((m) => `${m.kind}/${m.metadata.namespace ?? ''}/${m.metadata.name}`), ['Namespace//shop', 'Pod/default/web', 'Deployment/shop/api']);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['broken YAML', 'kind: Pod\n  metadata: : :', /document 1/],
    ['an unknown kind', 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}', /kind "ConfigMap" is not supported/],
    ['a wrong apiVersion', 'apiVersion: v2\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c}]}', /needs apiVersion v1/],
    ['no name', 'apiVersion: v1\nkind: Pod\nmetadata: {}\nspec: {containers: [{name: c}]}', /no metadata.name/],
    ['an upper-case name', 'apiVersion: v1\nkind: Pod\nmetadata: {name: Web}\nspec: {containers: [{name: c}]}', /metadata.name must be/],
    ['a pod without containers', 'apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}', /at least one container/],
    ['a command that is not a list', 'apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c, command: "sleep 1"}]}', /command must be a list/],
    ['a selector that misses the template', 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {selector: {matchLabels: {app: a}}, template: {metadata: {labels: {app: b}}, spec: {containers: [{name: c}]}}}', /does not match/],
    ['a service without ports', 'apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: {app: a}}', /at least one port/],
    ['a policy without podSelector', 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {}', /podSelector is required/],
    ['a second document that is bad', `${pod()}---\nkind: Pod`, /document 2/],
  ];
  for (const [what, text, msg] of bad) {
    test(`${what} is refused with a message that names it`, () => {
      assert.throws(() => parseManifests(text), (e: Error & { code?: string }) => msg.test(e.message) && /^PODNET_BAD_(YAML|MANIFEST)$/.test(String(e.code)));
    });
  }
});
