//! Every enum of the Live API, as proto3-JSON strings.
//!
//! Each enum keeps values it does not know as `Other(String)`, so a client built today keeps
//! working when the service adds a value. In strict mode (the simulator), an unknown value is
//! an error, as it is for the real server.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Defines a proto enum that serializes as its upper-case name and keeps unknown values.
macro_rules! proto_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "bevy_reflect", derive(bevy_reflect::Reflect))]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* #[doc = concat!("`", $wire, "`")] $variant, )+
            /// A value this crate does not know (kept verbatim).
            Other(String),
        }

        impl $name {
            /// Every value this crate knows, in declaration order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// The wire name of this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $wire, )+
                    $name::Other(s) => s.as_str(),
                }
            }

            /// Parses a wire name; unknown names become `Other`.
            pub fn from_wire(s: &str) -> Self {
                match s {
                    $( $wire => $name::$variant, )+
                    other => $name::Other(other.to_owned()),
                }
            }

            /// Whether this is a value this crate knows (not `Other`).
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Other(_))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name"))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        let value = $name::from_wire(v);
                        if !value.is_known() && crate::protocol::mode::is_strict() {
                            return Err(E::custom(format_args!(
                                "{}{}), \"{}\"",
                                crate::protocol::mode::INVALID_ENUM_MARKER,
                                stringify!($name),
                                crate::protocol::mode::truncate_value(v)
                            )));
                        }
                        Ok(value)
                    }
                    // proto3 JSON also allows the enum's number; 0 is always UNSPECIFIED.
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$name, E> {
                        match v {
                            0 => Ok($name::from_wire(<$name>::KNOWN[0].as_str())),
                            n => self.visit_str(&n.to_string()),
                        }
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$name, E> {
                        self.visit_str(&v.to_string())
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

proto_enum! {
    /// Output modality of a session (`generationConfig.responseModalities`).
    Modality {
        /// Unset.
        Unspecified = "MODALITY_UNSPECIFIED",
        /// Text parts.
        Text = "TEXT",
        /// Images (not used by Live).
        Image = "IMAGE",
        /// Video (not used by Live).
        Video = "VIDEO",
        /// 24 kHz PCM audio.
        Audio = "AUDIO",
        /// Documents (token accounting only).
        Document = "DOCUMENT",
    }
}

proto_enum! {
    /// Media resolution for video input.
    MediaResolution {
        /// Unset.
        Unspecified = "MEDIA_RESOLUTION_UNSPECIFIED",
        /// Low.
        Low = "MEDIA_RESOLUTION_LOW",
        /// Medium.
        Medium = "MEDIA_RESOLUTION_MEDIUM",
        /// High.
        High = "MEDIA_RESOLUTION_HIGH",
    }
}

proto_enum! {
    /// Thinking level for 3.x models.
    ThinkingLevel {
        /// Unset.
        Unspecified = "THINKING_LEVEL_UNSPECIFIED",
        /// Minimal.
        Minimal = "MINIMAL",
        /// Low.
        Low = "LOW",
        /// Medium.
        Medium = "MEDIUM",
        /// High.
        High = "HIGH",
    }
}

proto_enum! {
    /// How sensitive the server's voice-activity detector is to the start of speech.
    StartSensitivity {
        /// Unset (= high).
        Unspecified = "START_SENSITIVITY_UNSPECIFIED",
        /// Detects speech start more often.
        High = "START_SENSITIVITY_HIGH",
        /// Detects speech start less often.
        Low = "START_SENSITIVITY_LOW",
    }
}

proto_enum! {
    /// How sensitive the server's voice-activity detector is to the end of speech.
    EndSensitivity {
        /// Unset (= high).
        Unspecified = "END_SENSITIVITY_UNSPECIFIED",
        /// Ends speech more often.
        High = "END_SENSITIVITY_HIGH",
        /// Ends speech less often.
        Low = "END_SENSITIVITY_LOW",
    }
}

proto_enum! {
    /// What user activity does to the model's current output.
    ActivityHandling {
        /// Unset (= interrupts).
        Unspecified = "ACTIVITY_HANDLING_UNSPECIFIED",
        /// The start of user activity interrupts the model (barge-in).
        StartOfActivityInterrupts = "START_OF_ACTIVITY_INTERRUPTS",
        /// The model's output is never interrupted.
        NoInterruption = "NO_INTERRUPTION",
    }
}

proto_enum! {
    /// Which input a user turn includes.
    TurnCoverage {
        /// Unset (model default).
        Unspecified = "TURN_COVERAGE_UNSPECIFIED",
        /// Only input during activity.
        IncludesOnlyActivity = "TURN_INCLUDES_ONLY_ACTIVITY",
        /// All input since the last turn.
        IncludesAllInput = "TURN_INCLUDES_ALL_INPUT",
        /// Audio during activity and all video.
        IncludesAudioActivityAndAllVideo = "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO",
    }
}

proto_enum! {
    /// Whether a function call holds the model's turn.
    Behavior {
        /// Unset (model default).
        Unspecified = "UNSPECIFIED",
        /// Generation waits for the response.
        Blocking = "BLOCKING",
        /// The model keeps talking while the function runs.
        NonBlocking = "NON_BLOCKING",
    }
}

proto_enum! {
    /// When the model speaks about a `NON_BLOCKING` function's result.
    Scheduling {
        /// Unset (= when idle).
        Unspecified = "SCHEDULING_UNSPECIFIED",
        /// Only remember the result; no reply.
        Silent = "SILENT",
        /// Speak about it after the current output.
        WhenIdle = "WHEN_IDLE",
        /// Interrupt the current output and speak about it now.
        Interrupt = "INTERRUPT",
    }
}

proto_enum! {
    /// Why a turn completed.
    TurnCompleteReason {
        /// Unset.
        Unspecified = "TURN_COMPLETE_REASON_UNSPECIFIED",
        /// The model produced a malformed function call.
        MalformedFunctionCall = "MALFORMED_FUNCTION_CALL",
        /// The response was rejected.
        ResponseRejected = "RESPONSE_REJECTED",
        /// The model needs more input.
        NeedMoreInput = "NEED_MORE_INPUT",
        /// Prohibited input content.
        ProhibitedInputContent = "PROHIBITED_INPUT_CONTENT",
        /// Prohibited image input.
        ImageProhibitedInputContent = "IMAGE_PROHIBITED_INPUT_CONTENT",
        /// Input text names a prominent person.
        InputTextContainProminentPersonProhibited = "INPUT_TEXT_CONTAIN_PROMINENT_PERSON_PROHIBITED",
        /// Input image shows a celebrity.
        InputImageCelebrity = "INPUT_IMAGE_CELEBRITY",
        /// Input image shows a photo-realistic child.
        InputImagePhotoRealisticChildProhibited = "INPUT_IMAGE_PHOTO_REALISTIC_CHILD_PROHIBITED",
        /// Input text is NCII.
        InputTextNciiProhibited = "INPUT_TEXT_NCII_PROHIBITED",
        /// Other input problem.
        InputOther = "INPUT_OTHER",
        /// Input infringes IP.
        InputIpProhibited = "INPUT_IP_PROHIBITED",
        /// Blocklisted.
        Blocklist = "BLOCKLIST",
        /// Unsafe prompt for image generation.
        UnsafePromptForImageGeneration = "UNSAFE_PROMPT_FOR_IMAGE_GENERATION",
        /// Generated image failed safety.
        GeneratedImageSafety = "GENERATED_IMAGE_SAFETY",
        /// Generated content failed safety.
        GeneratedContentSafety = "GENERATED_CONTENT_SAFETY",
        /// Generated audio failed safety.
        GeneratedAudioSafety = "GENERATED_AUDIO_SAFETY",
        /// Generated video failed safety.
        GeneratedVideoSafety = "GENERATED_VIDEO_SAFETY",
        /// Generated content is prohibited.
        GeneratedContentProhibited = "GENERATED_CONTENT_PROHIBITED",
        /// Generated content is blocklisted.
        GeneratedContentBlocklist = "GENERATED_CONTENT_BLOCKLIST",
        /// Generated image is prohibited.
        GeneratedImageProhibited = "GENERATED_IMAGE_PROHIBITED",
        /// Generated image shows a celebrity.
        GeneratedImageCelebrity = "GENERATED_IMAGE_CELEBRITY",
        /// Prominent people detected by the rewriter.
        GeneratedImageProminentPeopleDetectedByRewriter = "GENERATED_IMAGE_PROMINENT_PEOPLE_DETECTED_BY_REWRITER",
        /// Generated image shows identifiable people.
        GeneratedImageIdentifiablePeople = "GENERATED_IMAGE_IDENTIFIABLE_PEOPLE",
        /// Generated image shows minors.
        GeneratedImageMinors = "GENERATED_IMAGE_MINORS",
        /// Output image infringes IP.
        OutputImageIpProhibited = "OUTPUT_IMAGE_IP_PROHIBITED",
        /// Other generation problem.
        GeneratedOther = "GENERATED_OTHER",
        /// Regeneration limit reached.
        MaxRegenerationReached = "MAX_REGENERATION_REACHED",
    }
}

proto_enum! {
    /// Type of a `voiceActivity` message.
    VoiceActivityType {
        /// Unset.
        Unspecified = "TYPE_UNSPECIFIED",
        /// The user started speaking.
        ActivityStart = "ACTIVITY_START",
        /// The user stopped speaking.
        ActivityEnd = "ACTIVITY_END",
    }
}

proto_enum! {
    /// Type of a `voiceActivityDetectionSignal` message.
    VadSignalType {
        /// Unset.
        Unspecified = "VAD_SIGNAL_TYPE_UNSPECIFIED",
        /// Start of speech.
        Sos = "VAD_SIGNAL_TYPE_SOS",
        /// End of speech.
        Eos = "VAD_SIGNAL_TYPE_EOS",
    }
}

proto_enum! {
    /// Role of a conversation turn.
    Role {
        /// The player (or the game speaking for them).
        User = "user",
        /// The model.
        Model = "model",
    }
}

proto_enum! {
    /// Safety category (`safetySettings[].category`).
    HarmCategory {
        /// Unset.
        Unspecified = "HARM_CATEGORY_UNSPECIFIED",
        /// Harassment.
        Harassment = "HARM_CATEGORY_HARASSMENT",
        /// Hate speech.
        HateSpeech = "HARM_CATEGORY_HATE_SPEECH",
        /// Sexually explicit content.
        SexuallyExplicit = "HARM_CATEGORY_SEXUALLY_EXPLICIT",
        /// Dangerous content.
        DangerousContent = "HARM_CATEGORY_DANGEROUS_CONTENT",
        /// Civic integrity.
        CivicIntegrity = "HARM_CATEGORY_CIVIC_INTEGRITY",
    }
}

proto_enum! {
    /// Safety threshold (`safetySettings[].threshold`).
    HarmBlockThreshold {
        /// Unset.
        Unspecified = "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
        /// Block low and above.
        BlockLowAndAbove = "BLOCK_LOW_AND_ABOVE",
        /// Block medium and above.
        BlockMediumAndAbove = "BLOCK_MEDIUM_AND_ABOVE",
        /// Block only high.
        BlockOnlyHigh = "BLOCK_ONLY_HIGH",
        /// Block none.
        BlockNone = "BLOCK_NONE",
        /// Filter off.
        Off = "OFF",
    }
}

proto_enum! {
    /// Language of `executableCode`.
    CodeLanguage {
        /// Unset.
        Unspecified = "LANGUAGE_UNSPECIFIED",
        /// Python.
        Python = "PYTHON",
    }
}

proto_enum! {
    /// Outcome of `codeExecutionResult`.
    CodeOutcome {
        /// Unset.
        Unspecified = "OUTCOME_UNSPECIFIED",
        /// Succeeded.
        Ok = "OUTCOME_OK",
        /// Failed.
        Failed = "OUTCOME_FAILED",
        /// Timed out.
        DeadlineExceeded = "OUTCOME_DEADLINE_EXCEEDED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_are_kept() {
        let m: Modality = serde_json::from_str("\"HOLOGRAM\"").unwrap();
        assert_eq!(m, Modality::Other("HOLOGRAM".into()));
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"HOLOGRAM\"");
        let m: Modality = serde_json::from_str("0").unwrap();
        assert_eq!(m, Modality::Unspecified);
    }
}
