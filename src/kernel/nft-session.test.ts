import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { joinTransaction, splitAtMarker } from './nft-session.ts';

describe('nft session: one line per transaction, answers split at the marker', () => {
  test('a script becomes one line of ` ; `-separated commands, blank lines dropped', () => {
    assert.equal(joinTransaction('add table ip t\n\nadd chain ip t c\n'), 'add table ip t ; add chain ip t c');
    assert.equal(joinTransaction('add set ip t s { type ipv4_addr ; }\n'), 'add set ip t s { type ipv4_addr ; }');
    assert.equal(joinTransaction('\n'), '');
    assert.throws(() => joinTransaction('# a comment\nadd table ip t\n'), /comments/);
  });

  const answer = 'Error: syntax error, unexpected newline, expecting string\npodnet-end-7\n^^^^^^^^^^^^\n';
  const cases: Array<[string, string, { before: string; rest: string } | undefined]> = [
    ['success: nothing before the answer', answer, { before: '', rest: '' }],
    [
      'failure: the transaction\'s error comes first',
      'Error: Could not process rule: No such file or directory\nadd rule ip t nosuch accept\n             ^^^^^^\n' + answer,
      { before: 'Error: Could not process rule: No such file or directory\nadd rule ip t nosuch accept\n             ^^^^^^\n', rest: '' },
    ],
    ['the answer not complete yet (no caret line)', 'Error: syntax error, unexpected newline, expecting string\npodnet-end-7\n', undefined],
    ['another marker\'s answer is not ours', answer.replace('podnet-end-7', 'podnet-end-6'), undefined],
    ['what follows the answer is kept', answer + 'Error: next', { before: '', rest: 'Error: next' }],
  ];
  for (const [name, stderr, want] of cases) {
    test(name, () => assert.deepEqual(splitAtMarker(stderr, 'podnet-end-7'), want));
  }
});
