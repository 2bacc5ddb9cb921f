// The official JavaScript SDK (@google/genai), unmodified, holds a Live session with live-sim.
// Usage: node js_live_session.mjs BASE_URL (an https:// URL of a `live-sim --tls`; trust its CA with
// NODE_EXTRA_CA_CERTS). Exits 0 when a spoken turn, a tool round trip and the reply arrive.
import { GoogleGenAI, Modality } from '@google/genai';
const base = process.argv[2];
const ai = new GoogleGenAI({ apiKey: 'sdk-check-key', httpOptions: { baseUrl: base } });
const queue = [];
let wake = null;
const next = () => new Promise((resolve) => { if (queue.length) resolve(queue.shift()); else wake = resolve; });
const session = await ai.live.connect({
  model: 'gemini-2.5-flash-native-audio-preview-12-2025',
  config: {
    responseModalities: [Modality.AUDIO],
    systemInstruction: 'You are Mira, the village blacksmith.',
    outputAudioTranscription: {},
    tools: [{ functionDeclarations: [{ name: 'open_gate', description: 'Opens a gate.',
      parametersJsonSchema: { type: 'object', properties: { gate: { type: 'string' } }, required: ['gate'] } }] }],
  },
  callbacks: {
    onmessage: (m) => { if (wake) { const w = wake; wake = null; w(m); } else queue.push(m); },
    onerror: (e) => { console.error('error', e.message); process.exit(1); },
    onclose: (e) => { if (e.code !== 1000) { console.error('closed', e.code, e.reason); } },
  },
});
async function turn(onTool) {
  let audio = 0, text = '';
  for (;;) {
    const m = await next();
    if (m.data) audio += Buffer.from(m.data, 'base64').length;
    if (m.toolCall && onTool) onTool(m.toolCall);
    const sc = m.serverContent;
    if (sc?.outputTranscription?.text) text += sc.outputTranscription.text;
    if (sc?.turnComplete) return { audio, text: text.trim() };
  }
}
session.sendClientContent({ turns: [{ role: 'user', parts: [{ text: 'Hello! Who are you?' }] }], turnComplete: true });
let t = await turn();
console.log(`turn 1: ${t.audio} bytes of audio; transcript: ${t.text}`);
if (t.audio < 48000 || !t.text.includes('Mira')) process.exit(1);
const calls = [];
session.sendClientContent({ turns: [{ role: 'user', parts: [{ text: 'Please open the north gate.' }] }], turnComplete: true });
t = await turn((tc) => {
  for (const fc of tc.functionCalls) {
    calls.push([fc.name, fc.args]);
    session.sendToolResponse({ functionResponses: [{ id: fc.id, name: fc.name, response: { output: 'the north gate is open' } }] });
  }
});
console.log(`turn 2: tool calls ${JSON.stringify(calls)}; reply: ${t.text}`);
if (calls.length !== 1 || calls[0][0] !== 'open_gate' || calls[0][1].gate !== 'north' || !t.text) process.exit(1);
session.close();
console.log('ok: the official JavaScript SDK talked to live-sim unmodified');
process.exit(0);
