// The trace of the retried request, drawn as a waterfall from the spans both sidecars recorded
// (GET /debug/spans on their admin ports): pod-b's CLIENT span, an attempt span per try, and
// pod-a's SERVER spans. With OTEL_EXPORTER_OTLP_ENDPOINT set, the same spans went to the
// collector (Jaeger) too.
import { renderWaterfall, type FinishedSpan } from '../../tracing/index.ts';
import { waitFor } from '../mesh.ts';
import type { Scene } from './scene.ts';

const RETRY_PATH = '/flaky?scene=retry';

export const trace: Scene = {
  name: 'trace',
  async run({ mesh, print }) {
    const line = await waitFor(() => mesh.accessLines('b').find((l) => l.direction === 'outbound' && l.path === RETRY_PATH && typeof l.trace_id === 'string'));
    if (!line) {
      print('\nTrace: no trace id in the access log (is trace-sampling 0?)');
      return false;
    }
    const traceId = line.trace_id as string;
    const spansOf = async (pod: 'a' | 'b') => {
      try {
        return ((JSON.parse(await mesh.admin(pod, `/debug/spans?trace=${traceId}`)) as { spans: FinishedSpan[] }).spans ?? []);
      } catch {
        return [];
      }
    };
    // spans end just after the response: ask again for a moment until both sides have them
    let spans: FinishedSpan[] = [];
    for (let i = 0; i < 20 && spans.filter((s) => s.kind === 'server').length < 2; i++) {
      spans = [...(await spansOf('b')), ...(await spansOf('a'))];
      if (spans.filter((s) => s.kind === 'server').length < 2) await new Promise((r) => setTimeout(r, 50));
    }
    print(`\nTrace ${traceId} of GET /flaky, from both sidecars (the retry included):`);
    for (const l of renderWaterfall(spans, { color: process.stdout.isTTY === true }).split('\n')) print(`  ${l}`);
    if ('endpoint' in mesh.traceExport) print(`  The spans were also exported to ${mesh.traceExport.endpoint}: in Jaeger (http://localhost:16686), service "client", trace ${traceId}.`);
    else print(`  (Not exported: ${mesh.traceExport.none}. To see it in Jaeger: docker run -p 16686:16686 -p 4318:4318 jaegertracing/jaeger, then OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 npm start -- --mode loopback)`);
    return spans.some((s) => s.kind === 'client') && spans.filter((s) => s.kind === 'server').length >= 2;
  },
};
