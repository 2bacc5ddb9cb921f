"""The official Python SDK (google-genai), unmodified, holds a Live session with live-sim.

Usage: python_live_session.py BASE_URL   (an https:// URL of a `live-sim --tls`; trust its CA
with SSL_CERT_FILE). Exits 0 when a spoken turn, a tool round trip and the reply about the tool
result all arrive; prints what it got.
"""

import asyncio
import sys

from google import genai
from google.genai import types


async def turn(session, on_tool=None):
    audio, text = 0, ""
    async for msg in session.receive():
        if msg.data:
            audio += len(msg.data)
        if msg.tool_call and on_tool:
            await on_tool(msg.tool_call)
        sc = msg.server_content
        if sc and sc.output_transcription and sc.output_transcription.text:
            text += sc.output_transcription.text
        if sc and sc.turn_complete:
            return audio, text.strip()
    raise SystemExit("the session ended before turnComplete")


async def main(base_url):
    client = genai.Client(api_key="sdk-check-key", http_options=types.HttpOptions(base_url=base_url))
    gate = types.FunctionDeclaration(
        name="open_gate",
        description="Opens a gate.",
        parameters=types.Schema(type="OBJECT", properties={"gate": types.Schema(type="STRING")}, required=["gate"]),
    )
    config = types.LiveConnectConfig(
        response_modalities=["AUDIO"],
        system_instruction="You are Mira, the village blacksmith.",
        speech_config=types.SpeechConfig(
            voice_config=types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Kore"))
        ),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        tools=[types.Tool(function_declarations=[gate])],
    )
    model = "gemini-2.5-flash-native-audio-preview-12-2025"
    async with client.aio.live.connect(model=model, config=config) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Hello! Who are you?")]), turn_complete=True
        )
        audio, text = await turn(session)
        print(f"turn 1: {audio} bytes of audio; transcript: {text}")
        assert audio > 24_000 * 2, "at least a second of 24 kHz audio"
        assert "Mira" in text, text

        calls = []

        async def answer(tool_call):
            for fc in tool_call.function_calls:
                calls.append((fc.name, dict(fc.args or {})))
                response = types.FunctionResponse(id=fc.id, name=fc.name, response={"output": "the north gate is open"})
                await session.send_tool_response(function_responses=[response])

        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Please open the north gate.")]),
            turn_complete=True,
        )
        audio, text = await turn(session, answer)
        print(f"turn 2: tool calls {calls}; reply: {text}")
        assert calls == [("open_gate", {"gate": "north"})], calls
        assert text, "the model spoke about the result"
    print("ok: the official Python SDK talked to live-sim unmodified")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
