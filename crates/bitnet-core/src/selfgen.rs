//! Self-generated training data (SEED.md): instruction templates of four domains (coding, math,
//! writing, reasoning), the seed's prompt `Instruction: {instruction}\nResponse:`, the response
//! extraction, the five filters in the seed's order, exact-duplicate removal, per-filter counts, the
//! end-of-sequence ids of a model and its chat template (rendered with minijinja the way transformers'
//! `apply_chat_template(tokenize=False)` does).
//!
//! Everything here is bytes in, values out: the CLI and the browser app read the files, sample the model
//! and write the JSONL; this module decides *what* to ask and *which* answers to keep.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};

// ---------------------------------------------------------------------------------------------------
// Seed constants.

/// Responses with fewer characters (Unicode scalar values, Python `len`) are rejected.
pub const MIN_CHARS: usize = 32;
/// Responses with more characters are rejected.
pub const MAX_CHARS: usize = 2048;
/// Responses with fewer whitespace-separated words are rejected.
pub const MIN_WORDS: usize = 8;
/// Lower-cased phrases that mark a refusal or an assistant disclaimer (the seed's list, in its order).
pub const DISCLAIMERS: [&str; 8] = [
    "as an ai",
    "i am an ai",
    "i'm an ai",
    "as a language model",
    "i cannot",
    "i can't",
    "i don't have",
    "i'm not able to",
];
/// Prompts are truncated to this many tokens.
pub const PROMPT_TOKENS: usize = 512;
pub const DEFAULT_TEMPERATURE: f32 = 0.7;
pub const DEFAULT_TOP_P: f32 = 0.9;
pub const DEFAULT_MAX_NEW_TOKENS: usize = 256;
pub const DEFAULT_SEED: u64 = 42;

/// The placeholder that every instruction form contains.
const TASK: &str = "{task}";

// ---------------------------------------------------------------------------------------------------
// Templates.

/// One domain: a name, an instruction form containing `{task}`, and its tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Domain {
    pub name: String,
    pub form: String,
    pub tasks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Templates {
    pub domains: Vec<Domain>,
}

/// The instruction chosen for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub domain: String,
    pub instruction: String,
}

impl Templates {
    /// Our own built-in set: the seed's four domains and instruction forms, with our own tasks.
    pub fn builtin() -> Templates {
        let domain = |name: &str, form: &str, tasks: &[&str]| Domain {
            name: name.to_string(),
            form: form.to_string(),
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
        };
        Templates {
            domains: vec![
                domain(
                    "coding",
                    "Write a Python function to {task}",
                    &[
                        "reverse the order of the words in a sentence",
                        "check whether a string is a valid IPv4 address",
                        "merge two sorted lists into one sorted list",
                        "count how often each word appears in a text",
                        "convert a Roman numeral to an integer",
                        "flatten a nested list of any depth",
                        "find the longest common prefix of a list of strings",
                        "rotate a square matrix 90 degrees clockwise",
                        "group a list of words into sets of anagrams",
                        "parse a duration such as '1h30m' into seconds",
                        "remove duplicates from a list while keeping the original order",
                        "compute the edit distance between two strings",
                        "split a list into chunks of a given size",
                        "return the n-th row of Pascal's triangle",
                    ],
                ),
                domain(
                    "math",
                    "Solve this math problem: {task}",
                    &[
                        "A train covers 180 km in 2.5 hours. What is its average speed in km/h?",
                        "What is the sum of the interior angles of a hexagon?",
                        "Solve for x: 3x - 7 = 2x + 5.",
                        "A shirt costs $40 after a 20% discount. What was its original price?",
                        "In how many different orders can 5 books be placed on a shelf?",
                        "Find the greatest common divisor of 84 and 126.",
                        "What is the probability of rolling a total of 7 with two fair dice?",
                        "A rectangle has a perimeter of 30 cm and a length of 9 cm. What is its area?",
                        "If 4 workers build a wall in 6 days, how many days do 3 workers need at the same rate?",
                        "What is the 10th term of the arithmetic sequence 3, 7, 11, ...?",
                        "Write 0.375 as a fraction in lowest terms.",
                        "A circle has a radius of 5 cm. What is its area to two decimal places?",
                        "Two numbers add up to 20 and differ by 6. What are they?",
                        "How much is 1,500 dollars worth after 2 years at 4% interest compounded yearly?",
                    ],
                ),
                domain(
                    "writing",
                    "Write a {task}",
                    &[
                        "haiku about the first frost of the year",
                        "short product description for a reusable water bottle",
                        "polite email declining a meeting invitation",
                        "two-paragraph story about a lighthouse keeper who finds a message in a bottle",
                        "limerick about a cat who learns to play the piano",
                        "brief thank-you note to a neighbour who watered your plants",
                        "short speech congratulating a team on finishing a difficult project",
                        "paragraph describing a busy market at dawn",
                        "friendly reminder to a colleague about an overdue report",
                        "short review of an imaginary science-fiction novel",
                        "persuasive paragraph encouraging people to cycle to work",
                        "four-line poem about a rainy afternoon in the city",
                        "welcome message for new members of a hiking club",
                        "dialogue between a baker and a customer choosing a birthday cake",
                    ],
                ),
                domain(
                    "reasoning",
                    "Answer this question with step-by-step reasoning: {task}",
                    &[
                        "Anna is older than Ben, and Ben is older than Chloe. Who is the youngest?",
                        "A clock shows 3:15. What is the angle between the hour and minute hands?",
                        "Why does ice float on water?",
                        "If today is Wednesday, what day of the week will it be in 100 days?",
                        "A farm has chickens and cows with 20 heads and 56 legs in total. How many cows are there?",
                        "Why do we see lightning before we hear the thunder?",
                        "Can a prime number be even?",
                        "Which is heavier, a kilogram of feathers or a kilogram of iron?",
                        "Three boxes are labelled apples, oranges and mixed, and every label is wrong. Which single box should you open to relabel all three?",
                        "A shop is open from 9 am to 5:30 pm every day except Sunday. How many hours is it open per week?",
                        "Why does a metal spoon feel colder than a wooden one in the same room?",
                        "A snail climbs 3 metres up a 10-metre wall each day and slides back 2 metres each night. On which day does it reach the top?",
                        "What is the next number in the sequence 2, 6, 12, 20, 30?",
                        "If every guest at a party shakes hands once with every other guest and there are 6 guests, how many handshakes are there?",
                    ],
                ),
            ],
        }
    }

    /// Parses a JSON templates file `{"domains":[{"name":..,"form":..,"tasks":[..]}]}` and validates it.
    pub fn from_json(file: &str, bytes: &[u8]) -> Result<Templates> {
        let templates: Templates =
            serde_json::from_slice(bytes).map_err(|e| CoreError::json(file, e))?;
        templates.validate(file)?;
        Ok(templates)
    }

    /// Checks what `pick` relies on: at least one domain; each with a non-empty name, a form containing
    /// `{task}` and at least one task, none empty. Errors name `file` and the domain.
    pub fn validate(&self, file: &str) -> Result<()> {
        if self.domains.is_empty() {
            return Err(CoreError::config(file, "templates: no domains"));
        }
        for (i, d) in self.domains.iter().enumerate() {
            if d.name.trim().is_empty() {
                return Err(CoreError::config(
                    file,
                    format!("templates: domain {} has an empty name", i + 1),
                ));
            }
            let which = format!("domain `{}`", d.name);
            if !d.form.contains(TASK) {
                return Err(CoreError::config(
                    file,
                    format!(
                        "templates: {which}: form {:?} does not contain {TASK}",
                        d.form
                    ),
                ));
            }
            if d.tasks.is_empty() {
                return Err(CoreError::config(
                    file,
                    format!("templates: {which} has no tasks"),
                ));
            }
            if let Some(j) = d.tasks.iter().position(|t| t.trim().is_empty()) {
                return Err(CoreError::config(
                    file,
                    format!("templates: {which}: task {} is empty", j + 1),
                ));
            }
        }
        Ok(())
    }

    /// The instruction of attempt `attempt` of a run seeded with `seed`: a pure function of
    /// (seed, attempt), so a resumed run asks the same questions. A domain is drawn uniformly, then a
    /// task of it uniformly, and the form is filled.
    ///
    /// Panics when a domain has no tasks or there is no domain (`builtin`, `from_json` and `validate`
    /// rule that out).
    pub fn pick(&self, seed: u64, attempt: u64) -> Pick {
        assert!(
            !self.domains.is_empty(),
            "selfgen: templates have no domains"
        );
        // Attempt n draws from its own stream (no state is carried between attempts), of a seed
        // apart from the one its tokens are sampled with.
        let mut rng = crate::rng::Rng::stream(seed ^ PICK_SALT, attempt);
        let d = &self.domains[rng.below(self.domains.len() as u64) as usize];
        assert!(
            !d.tasks.is_empty(),
            "selfgen: domain `{}` has no tasks",
            d.name
        );
        let task = &d.tasks[rng.below(d.tasks.len() as u64) as usize];
        Pick {
            domain: d.name.clone(),
            instruction: d.form.replace(TASK, task),
        }
    }

    /// Total number of distinct (domain, task) pairs.
    pub fn len(&self) -> usize {
        self.domains
            .iter()
            .flat_map(|d| d.tasks.iter().map(move |t| (d.name.as_str(), t.as_str())))
            .collect::<HashSet<_>>()
            .len()
    }

    /// True when there is no (domain, task) pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Separates the instruction draws from the token draws of the same attempt.
const PICK_SALT: u64 = 0x7E4D_1A7E_5EED_0001;

// ---------------------------------------------------------------------------------------------------
// Prompt, response, filters.

/// The seed's prompt.
pub fn prompt_text(instruction: &str) -> String {
    format!("Instruction: {instruction}\nResponse:")
}

/// The response in a decoded continuation: the text after the first `Response:` when there is one,
/// else the whole text; trimmed of surrounding whitespace.
pub fn extract_response(continuation: &str) -> String {
    const MARK: &str = "Response:";
    let text = match continuation.find(MARK) {
        Some(at) => &continuation[at + MARK.len()..],
        None => continuation,
    };
    text.trim_matches(is_py_space).to_string()
}

/// Python's `str.isspace` for one character: Unicode White_Space plus the ASCII separators
/// U+001C..U+001F, which Python's `str.split()` also splits on.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Number of words as Python's `len(text.split())`.
fn word_count(text: &str) -> usize {
    text.split(is_py_space).filter(|w| !w.is_empty()).count()
}

/// Why a response was rejected, in the seed's filter order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    TooShort,
    TooLong,
    Disclaimer,
    TooFewWords,
    InstructionLonger,
}

impl Rejection {
    /// Every filter, in the order `check` applies them.
    pub const ALL: [Rejection; 5] = [
        Rejection::TooShort,
        Rejection::TooLong,
        Rejection::Disclaimer,
        Rejection::TooFewWords,
        Rejection::InstructionLonger,
    ];

    /// Human text for reports.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::TooShort => "too short (< 32 chars)",
            Rejection::TooLong => "too long (> 2048 chars)",
            Rejection::Disclaimer => "disclaimer or refusal",
            Rejection::TooFewWords => "too few words (< 8)",
            Rejection::InstructionLonger => "instruction longer than response",
        }
    }
}

/// The five filters in the seed's order; the first that fails is returned.
pub fn check(instruction: &str, response: &str) -> std::result::Result<(), Rejection> {
    let chars = response.chars().count();
    if chars < MIN_CHARS {
        return Err(Rejection::TooShort);
    }
    if chars > MAX_CHARS {
        return Err(Rejection::TooLong);
    }
    // The seed compares lower-cased text with ASCII apostrophes; models often write U+2019 instead.
    let lower = response.to_lowercase().replace('\u{2019}', "'");
    if DISCLAIMERS.iter().any(|d| lower.contains(d)) {
        return Err(Rejection::Disclaimer);
    }
    let words = word_count(response);
    if words < MIN_WORDS {
        return Err(Rejection::TooFewWords);
    }
    if word_count(instruction) > words {
        return Err(Rejection::InstructionLonger);
    }
    Ok(())
}

/// Exact-duplicate removal of outputs (first kept), by SHA-256 of the output's UTF-8 bytes.
#[derive(Debug, Default, Clone)]
pub struct Dedup {
    seen: HashSet<[u8; 32]>,
}

impl Dedup {
    pub fn new() -> Self {
        Self::default()
    }

    /// True when `output` was not seen before (and remembers it).
    pub fn insert(&mut self, output: &str) -> bool {
        self.seen.insert(Sha256::digest(output.as_bytes()).into())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Counts of a self-generation run (saved and resumed by the CLI).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub attempts: u64,
    pub kept: u64,
    pub too_short: u64,
    pub too_long: u64,
    pub disclaimer: u64,
    pub too_few_words: u64,
    pub instruction_longer: u64,
    pub duplicates: u64,
}

impl Counts {
    /// Counts one rejection by filter `r`.
    pub fn reject(&mut self, r: Rejection) {
        let count = match r {
            Rejection::TooShort => &mut self.too_short,
            Rejection::TooLong => &mut self.too_long,
            Rejection::Disclaimer => &mut self.disclaimer,
            Rejection::TooFewWords => &mut self.too_few_words,
            Rejection::InstructionLonger => &mut self.instruction_longer,
        };
        *count += 1;
    }

    /// All rejections: the five filters plus duplicates.
    pub fn rejected(&self) -> u64 {
        self.too_short
            + self.too_long
            + self.disclaimer
            + self.too_few_words
            + self.instruction_longer
            + self.duplicates
    }
}

// ---------------------------------------------------------------------------------------------------
// End-of-sequence ids.

/// End-of-sequence ids for generation: `eos_token_id` of generation_config.json when it has one (an
/// integer or a list of integers), else of config.json; empty when neither has one.
pub fn eos_ids(config_json: &[u8], generation_config: Option<&[u8]>) -> Result<Vec<u32>> {
    const CONFIG: &str = "config.json";
    const GENERATION: &str = "generation_config.json";
    let config: serde_json::Value =
        serde_json::from_slice(config_json).map_err(|e| CoreError::json(CONFIG, e))?;
    if let Some(bytes) = generation_config {
        let generation: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| CoreError::json(GENERATION, e))?;
        if let Some(ids) = eos_field(GENERATION, &generation)? {
            return Ok(ids);
        }
    }
    Ok(eos_field(CONFIG, &config)?.unwrap_or_default())
}

/// `eos_token_id` of one JSON object: None when absent or null.
fn eos_field(file: &str, json: &serde_json::Value) -> Result<Option<Vec<u32>>> {
    let id = |v: &serde_json::Value| {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                CoreError::config(
                    file,
                    format!("eos_token_id: expected a token id (a non-negative integer), got {v}"),
                )
            })
    };
    match json.get("eos_token_id") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Array(list)) => {
            list.iter().map(id).collect::<Result<_>>().map(Some)
        }
        Some(v) => Ok(Some(vec![id(v)?])),
    }
}

// ---------------------------------------------------------------------------------------------------
// Chat templates.

/// The special-token variables transformers passes to a chat template (its `special_tokens_map`).
const SPECIAL_TOKENS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// A model's chat template (a Jinja string from tokenizer_config.json) with its special tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTemplate {
    file: String,
    source: String,
    /// (variable, token text), e.g. ("bos_token", "<s>").
    tokens: Vec<(String, String)>,
}

impl ChatTemplate {
    /// Reads `chat_template` of tokenizer_config.json: a string, or a list of `{name, template}` of
    /// which the one named "default" is used. None when the file has no template.
    pub fn from_tokenizer_config(file: &str, bytes: &[u8]) -> Result<Option<ChatTemplate>> {
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| CoreError::json(file, e))?;
        let source = match json.get("chat_template") {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(list)) => {
                let named = |name: &str| {
                    list.iter()
                        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(name))
                };
                let Some(default) = named("default") else {
                    let names: Vec<&str> = list
                        .iter()
                        .filter_map(|t| t.get("name").and_then(|n| n.as_str()))
                        .collect();
                    return Err(CoreError::config(
                        file,
                        format!(
                            "chat_template: several templates ({}) and none named \"default\"",
                            names.join(", ")
                        ),
                    ));
                };
                match default.get("template").and_then(|t| t.as_str()) {
                    Some(s) => s.to_string(),
                    None => {
                        return Err(CoreError::config(
                            file,
                            "chat_template: the \"default\" entry has no \"template\" string",
                        ));
                    }
                }
            }
            Some(_) => {
                return Err(CoreError::config(
                    file,
                    "chat_template: expected a string or a list of {name, template} objects",
                ));
            }
        };
        let tokens = SPECIAL_TOKENS
            .iter()
            .filter_map(|&name| {
                let text = match json.get(name)? {
                    serde_json::Value::String(s) => s.clone(),
                    v => v.get("content")?.as_str()?.to_string(),
                };
                Some((name.to_string(), text))
            })
            .collect();
        Ok(Some(ChatTemplate {
            file: file.to_string(),
            source,
            tokens,
        }))
    }

    /// The Jinja source of the template.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders one user message with `add_generation_prompt=true`, as transformers'
    /// `apply_chat_template(tokenize=False)` would (trim_blocks, lstrip_blocks, no autoescape, the last
    /// trailing newline of the template dropped, loop controls, Python string methods,
    /// `raise_exception`). Template errors name the file.
    pub fn render(&self, instruction: &str) -> Result<String> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // Jinja's default, which transformers keeps.
        env.set_keep_trailing_newline(false);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);

        let mut ctx = serde_json::Map::new();
        ctx.insert(
            "messages".into(),
            serde_json::json!([{ "role": "user", "content": instruction }]),
        );
        ctx.insert("add_generation_prompt".into(), true.into());
        ctx.insert("tools".into(), serde_json::Value::Null);
        ctx.insert("documents".into(), serde_json::Value::Null);
        for (name, text) in &self.tokens {
            ctx.insert(name.clone(), text.clone().into());
        }

        let err =
            |e: minijinja::Error| CoreError::config(&self.file, format!("chat_template: {e}"));
        let template = env
            .template_from_named_str("chat_template", &self.source)
            .map_err(err)?;
        template.render(serde_json::Value::Object(ctx)).map_err(err)
    }
}

/// `raise_exception(message)` of HF chat templates: aborts rendering with the message.
fn raise_exception(message: String) -> std::result::Result<minijinja::Value, minijinja::Error> {
    Err(minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        message,
    ))
}

// ---------------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// A response of exactly 8 words and `n` characters (n ≥ 29), using 'é' (2 bytes) so that the
    /// byte length is larger than the character count.
    fn response_of_chars(n: usize) -> String {
        let head = "éé bb cc dd ee ff gg "; // 7 words, 21 chars, 23 bytes
        let last = "h".repeat(n - head.chars().count());
        let r = format!("{head}{last}");
        assert_eq!(r.chars().count(), n);
        assert!(r.len() > n);
        assert_eq!(word_count(&r), 8);
        r
    }

    #[test]
    fn too_short_boundary_counts_chars_not_bytes() {
        assert_eq!(check("x", &response_of_chars(31)), Err(Rejection::TooShort));
        assert_eq!(check("x", &response_of_chars(32)), Ok(()));
    }

    #[test]
    fn too_long_boundary_counts_chars_not_bytes() {
        // 409 × "wörd " = 2045 chars, then 3 more; bytes are 2457 > 2048.
        let base = format!("{}xyz", "wörd ".repeat(409));
        assert_eq!(base.chars().count(), MAX_CHARS);
        assert!(base.len() > MAX_CHARS);
        assert_eq!(check("x", &base), Ok(()));
        assert_eq!(check("x", &format!("{base}z")), Err(Rejection::TooLong));
    }

    #[test]
    fn word_boundary() {
        let seven = "alpha bravo charlie delta echo foxtrot golfing";
        assert!(seven.chars().count() >= MIN_CHARS);
        assert_eq!(check("x", seven), Err(Rejection::TooFewWords));
        assert_eq!(check("x", &format!("{seven} hotel")), Ok(()));
        // Any whitespace separates, runs of it count once.
        let eight = "alpha\tbravo\ncharlie   delta echo\r\nfoxtrot golfing\u{a0}hotel";
        assert_eq!(check("x", eight), Ok(()));
    }

    #[test]
    fn words_split_like_python() {
        assert_eq!(word_count("  a  b\tc\n"), 3);
        assert_eq!(word_count("a\u{1f}b\u{2003}c"), 3);
        assert_eq!(word_count(""), 0);
        assert_eq!(word_count(" \n "), 0);
    }

    #[test]
    fn disclaimers_are_case_insensitive_and_see_typographic_apostrophes() {
        let upper = "AS AN AI language model, I think this is a good question overall.";
        assert_eq!(check("x", upper), Err(Rejection::Disclaimer));
        let curly = "I can\u{2019}t help with that particular request today, sorry friend.";
        assert_eq!(check("x", curly), Err(Rejection::Disclaimer));
        let clean = "I can help with that particular request today, my good friend.";
        assert_eq!(check("x", clean), Ok(()));
        for d in DISCLAIMERS {
            let r = format!(
                "Well, {} say much more about this topic right now.",
                d.to_uppercase()
            );
            assert_eq!(check("x", &r), Err(Rejection::Disclaimer), "{d}");
        }
    }

    #[test]
    fn instruction_may_have_as_many_words_but_not_more() {
        let response = "one two three four five six seven eight-and-more";
        let equal = "a b c d e f g h";
        assert_eq!(check(equal, response), Ok(()));
        assert_eq!(
            check(&format!("{equal} i"), response),
            Err(Rejection::InstructionLonger)
        );
    }

    #[test]
    fn first_failing_filter_is_reported() {
        assert_eq!(check("x", "As an AI, no."), Err(Rejection::TooShort));
        let long = format!("As an AI {}", "word ".repeat(500));
        assert_eq!(check("x", &long), Err(Rejection::TooLong));
        let few = "As an AI language model, I decline.";
        assert!(few.chars().count() >= MIN_CHARS && word_count(few) < MIN_WORDS);
        assert_eq!(check("x", few), Err(Rejection::Disclaimer));
        let few_words = "antidisestablishmentarianism is a long word";
        assert_eq!(
            check("a b c d e f g h i j", few_words),
            Err(Rejection::TooFewWords)
        );
    }

    #[test]
    fn rejection_labels_and_serde_names() {
        let labels: HashSet<&str> = Rejection::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), 5);
        assert!(Rejection::TooShort.label().contains("32"));
        assert!(Rejection::TooLong.label().contains("2048"));
        assert_eq!(
            serde_json::to_string(&Rejection::InstructionLonger).unwrap(),
            "\"instruction_longer\""
        );
        assert_eq!(
            serde_json::from_str::<Rejection>("\"too_few_words\"").unwrap(),
            Rejection::TooFewWords
        );
    }

    #[test]
    fn counts_per_filter() {
        let mut c = Counts::default();
        for (i, r) in Rejection::ALL.into_iter().enumerate() {
            for _ in 0..=i {
                c.reject(r);
            }
        }
        c.duplicates = 10;
        assert_eq!(
            (
                c.too_short,
                c.too_long,
                c.disclaimer,
                c.too_few_words,
                c.instruction_longer
            ),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(c.rejected(), 25);
        let back: Counts = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn dedup_keeps_first_and_rejects_exact_duplicates() {
        let mut d = Dedup::new();
        assert!(d.is_empty());
        assert!(d.insert("hello world"));
        assert!(!d.insert("hello world"));
        assert!(d.insert("hello  world"));
        assert!(d.insert("Hello world"));
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn builtin_templates() {
        let t = Templates::builtin();
        let names: Vec<&str> = t.domains.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["coding", "math", "writing", "reasoning"]);
        let forms: Vec<&str> = t.domains.iter().map(|d| d.form.as_str()).collect();
        assert_eq!(
            forms,
            [
                "Write a Python function to {task}",
                "Solve this math problem: {task}",
                "Write a {task}",
                "Answer this question with step-by-step reasoning: {task}",
            ]
        );
        for d in &t.domains {
            assert!(d.tasks.len() >= 12, "{}", d.name);
            assert!(d.form.contains("{task}"));
        }
        t.validate("builtin").unwrap();
        let total: usize = t.domains.iter().map(|d| d.tasks.len()).sum();
        assert_eq!(t.len(), total, "builtin tasks are distinct");
        assert!(!t.is_empty());
    }

    #[test]
    fn pick_is_deterministic_and_covers_domains() {
        let t = Templates::builtin();
        let mut seen = HashSet::new();
        for a in 0..100 {
            let p = t.pick(DEFAULT_SEED, a);
            assert_eq!(p, t.pick(DEFAULT_SEED, a));
            let d = t.domains.iter().find(|d| d.name == p.domain).unwrap();
            assert!(
                d.tasks
                    .iter()
                    .any(|task| d.form.replace("{task}", task) == p.instruction),
                "{p:?}"
            );
            seen.insert(p.domain);
        }
        assert_eq!(seen.len(), 4);
        // Another seed asks other questions; attempts of one seed differ.
        let a: Vec<Pick> = (0..20).map(|i| t.pick(1, i)).collect();
        let b: Vec<Pick> = (0..20).map(|i| t.pick(2, i)).collect();
        assert_ne!(a, b);
        assert!(a.iter().any(|p| p != &a[0]));
    }

    #[test]
    fn pick_is_roughly_uniform() {
        let t = Templates::builtin();
        let n = 4000;
        let mut per_domain = std::collections::HashMap::new();
        let mut instructions = HashSet::new();
        for a in 0..n {
            let p = t.pick(7, a);
            *per_domain.entry(p.domain).or_insert(0u32) += 1;
            instructions.insert(p.instruction);
        }
        for (d, c) in &per_domain {
            assert!((850..1150).contains(c), "{d}: {c} of {n}");
        }
        assert_eq!(instructions.len(), t.len(), "every task is asked");
    }

    #[test]
    fn from_json_roundtrip_and_errors_name_file_and_domain() {
        let t = Templates::builtin();
        let bytes = serde_json::to_vec(&t).unwrap();
        assert_eq!(Templates::from_json("t.json", &bytes).unwrap(), t);

        let bad =
            |json: &str| Templates::from_json("my_templates.json", json.as_bytes()).unwrap_err();
        let e = bad(r#"{"domains":[{"name":"math","form":"Solve: {x}","tasks":["1+1"]}]}"#);
        assert!(matches!(e, CoreError::Config { .. }), "{e}");
        let m = e.to_string();
        assert!(
            m.contains("my_templates.json") && m.contains("math") && m.contains("{task}"),
            "{m}"
        );

        let m = bad(r#"{"domains":[{"name":"a","form":"{task}","tasks":["t"]},{"name":"poems","form":"Write {task}","tasks":[]}]}"#).to_string();
        assert!(
            m.contains("my_templates.json") && m.contains("poems") && m.contains("no tasks"),
            "{m}"
        );

        let m =
            bad(r#"{"domains":[{"name":"poems","form":"Write {task}","tasks":["a haiku","  "]}]}"#)
                .to_string();
        assert!(m.contains("poems") && m.contains("task 2"), "{m}");

        let m = bad(r#"{"domains":[{"name":"a","form":"{task}","tasks":["t"]},{"name":" ","form":"{task}","tasks":["t"]}]}"#).to_string();
        assert!(
            m.contains("my_templates.json") && m.contains("domain 2"),
            "{m}"
        );

        let m = bad(r#"{"domains":[]}"#).to_string();
        assert!(
            m.contains("my_templates.json") && m.contains("no domains"),
            "{m}"
        );

        let m = bad(r#"{"domains":[{"name":"a"#).to_string();
        assert!(m.contains("my_templates.json"), "{m}");
    }

    #[test]
    fn prompt_and_response() {
        assert_eq!(
            prompt_text("Write a haiku"),
            "Instruction: Write a haiku\nResponse:"
        );
        assert_eq!(
            extract_response("Instruction: q\nResponse:  the answer \n\n"),
            "the answer"
        );
        assert_eq!(
            extract_response(" a Response: b Response: c "),
            "b Response: c"
        );
        assert_eq!(
            extract_response("\n plain continuation\t"),
            "plain continuation"
        );
        assert_eq!(extract_response("Response:"), "");
    }

    #[test]
    fn eos_ids_from_generation_config_or_config() {
        let config = br#"{"eos_token_id": 2}"#;
        assert_eq!(eos_ids(config, None).unwrap(), vec![2]);
        assert_eq!(
            eos_ids(
                config,
                Some(br#"{"eos_token_id": [128001, 128009]}"#.as_slice())
            )
            .unwrap(),
            vec![128001, 128009]
        );
        assert_eq!(
            eos_ids(config, Some(br#"{"eos_token_id": 7}"#.as_slice())).unwrap(),
            vec![7]
        );
        // Fallback to config.json when generation_config.json has none.
        assert_eq!(
            eos_ids(config, Some(br#"{"do_sample": true}"#.as_slice())).unwrap(),
            vec![2]
        );
        assert_eq!(
            eos_ids(config, Some(br#"{"eos_token_id": null}"#.as_slice())).unwrap(),
            vec![2]
        );
        assert_eq!(
            eos_ids(br#"{"eos_token_id": [1, 2]}"#, None).unwrap(),
            vec![1, 2]
        );
        // Neither has one.
        assert!(eos_ids(b"{}", Some(b"{}".as_slice())).unwrap().is_empty());
        assert!(eos_ids(b"{}", None).unwrap().is_empty());
        // Malformed files are named.
        let m = eos_ids(config, Some(b"{not json".as_slice()))
            .unwrap_err()
            .to_string();
        assert!(m.contains("generation_config.json"), "{m}");
        let m = eos_ids(b"[", None).unwrap_err().to_string();
        assert!(m.contains("config.json"), "{m}");
        let m = eos_ids(config, Some(br#"{"eos_token_id": "</s>"}"#.as_slice()))
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("generation_config.json") && m.contains("eos_token_id"),
            "{m}"
        );
        assert!(eos_ids(br#"{"eos_token_id": [-1]}"#, None).is_err());
    }

    const QWEN2: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    fn tokenizer_config(template: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "bos_token": {"content": "<s>", "lstrip": false},
            "eos_token": "</s>",
            "pad_token": null,
            "chat_template": template,
        }))
        .unwrap()
    }

    fn render(template: &str, instruction: &str) -> Result<String> {
        let bytes = tokenizer_config(template.into());
        ChatTemplate::from_tokenizer_config("tokenizer_config.json", &bytes)?
            .unwrap()
            .render(instruction)
    }

    #[test]
    fn chat_template_chatml() {
        assert_eq!(
            render(QWEN2, "Say <hi> & 'bye'").unwrap(),
            "<|im_start|>user\nSay <hi> & 'bye'<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn chat_template_tokens_strip_and_block_whitespace() {
        // Llama-2 style: bos_token given as an object, Python's .strip(), trim/lstrip blocks, and the
        // template's final newline dropped.
        let t = "{{ bos_token }}\n{% for m in messages %}\n    {% if m['role'].startswith('us') %}\n[INST] {{ m['content'].strip() }} [/INST]\n    {% endif %}\n{% endfor %}\n{{ eos_token }}\n";
        assert_eq!(
            render(t, "  two plus two?\n").unwrap(),
            "<s>\n[INST] two plus two? [/INST]\n</s>"
        );
        // Loop controls.
        let t =
            "{% for m in messages %}{% if loop.first %}{% continue %}{% endif %}x{% endfor %}ok";
        assert_eq!(render(t, "q").unwrap(), "ok");
    }

    #[test]
    fn chat_template_errors_name_the_file() {
        let t = "{% if messages[0]['role'] == 'user' %}{{ raise_exception('System role required') }}{% endif %}";
        let e = render(t, "q").unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, CoreError::Config { .. }), "{m}");
        assert!(
            m.contains("tokenizer_config.json") && m.contains("System role required"),
            "{m}"
        );

        let m = render("{% for m in messages %}", "q")
            .unwrap_err()
            .to_string();
        assert!(m.contains("tokenizer_config.json"), "{m}");
    }

    #[test]
    fn chat_template_from_tokenizer_config() {
        let none = br#"{"bos_token": "<s>"}"#;
        assert!(
            ChatTemplate::from_tokenizer_config("t.json", none)
                .unwrap()
                .is_none()
        );
        let null = br#"{"chat_template": null}"#;
        assert!(
            ChatTemplate::from_tokenizer_config("t.json", null)
                .unwrap()
                .is_none()
        );

        let list = tokenizer_config(serde_json::json!([
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": "DEFAULT {{ messages[0].content }}"},
        ]));
        let t = ChatTemplate::from_tokenizer_config("t.json", &list)
            .unwrap()
            .unwrap();
        assert_eq!(t.source(), "DEFAULT {{ messages[0].content }}");
        assert_eq!(t.render("hi").unwrap(), "DEFAULT hi");

        let no_default = tokenizer_config(serde_json::json!([{"name": "rag", "template": "x"}]));
        let m = ChatTemplate::from_tokenizer_config("tok.json", &no_default)
            .unwrap_err()
            .to_string();
        assert!(m.contains("tok.json") && m.contains("default"), "{m}");

        let m = ChatTemplate::from_tokenizer_config("tok.json", b"{")
            .unwrap_err()
            .to_string();
        assert!(m.contains("tok.json"), "{m}");
    }
}
