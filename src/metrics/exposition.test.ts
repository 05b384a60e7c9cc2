import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseExposition, sampleValue, ExpositionError } from './exposition.ts';

test('reads families, types, escaped label values and special floats', () => {
  const f = parseExposition(
    [
      '# HELP x_total Things.\\nMore.',
      '# TYPE x_total counter',
      'x_total{a="1",b="q\\"uote\\\\ \\n"} 3',
      'x_total{a="2"} 1.5e2 1700000000000',
      '# TYPE h histogram',
      'h_bucket{le="0.1"} 1',
      'h_bucket{le="+Inf"} 2',
      'h_sum 0.3',
      'h_count 2',
      'g NaN',
      'g2 Nan',
      'g3 -Inf',
      '',
    ].join('\n'),
  );
  assert.equal(f.get('x_total')!.type, 'counter');
  assert.equal(f.get('x_total')!.help, 'Things.\nMore.');
  assert.equal(f.get('x_total')!.samples[0]!.labels['b'], 'q"uote\\ \n');
  assert.equal(sampleValue(f, 'x_total'), 153);
  assert.equal(sampleValue(f, 'x_total', { a: '1' }), 3);
  assert.equal(f.get('h')!.samples.length, 4, 'suffixed samples belong to their histogram');
  assert.ok(Number.isNaN(f.get('g2')!.samples[0]!.value));
  assert.equal(f.get('g3')!.samples[0]!.value, -Infinity);
});

test('malformed text is an error naming the line', () => {
  const bad: [string, RegExp][] = [
    ['x{a="1} 1', /line 1: label a: unterminated value/],
    ['x{a=1} 1', /value not quoted/],
    ['x 1\nx{a="1"} one', /line 2: bad value "one"/],
    ['# TYPE x countr', /unknown type "countr"/],
    ['x 1\n# TYPE x counter', /TYPE after samples/],
    ['x{1a="v"} 1', /bad label name/],
    ['# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1', /below the one before/],
    ['# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1', /no le="\+Inf" bucket/],
    ['# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 3', /!= _count/],
  ];
  for (const [text, msg] of bad) assert.throws(() => parseExposition(text), (e: unknown) => e instanceof ExpositionError && msg.test(e.message), text);
});
