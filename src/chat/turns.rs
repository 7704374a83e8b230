//! The conversation: follow-ups that carry no question of their own ("agent", "thanks",
//! "yes", "no", a greeting) are answered from the conversation so far, without matching
//! the word against the knowledge base. Every other message is a question.

use super::kb::{Entry, Replies};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    /// `system`, `developer`, `tool`: context for a model, not part of the dialogue here.
    Other,
}

/// One message of the conversation.
#[derive(Debug, Clone)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

/// A message that is only a follow-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    Greeting,
    Agent,
    Thanks,
    Yes,
    No,
}

const GREETING: &[&str] = &[
    "hi",
    "hello",
    "hey",
    "hiya",
    "hi there",
    "hello there",
    "hey there",
    "good morning",
    "good afternoon",
    "good evening",
    "morning",
];
const AGENT: &[&str] = &[
    "agent",
    "an agent",
    "human",
    "a human",
    "person",
    "a person",
    "real person",
    "a real person",
    "real human",
    "operator",
    "representative",
    "a representative",
    "live agent",
    "human agent",
    "agent please",
    "human please",
    "talk to agent",
    "talk to an agent",
    "talk to a human",
    "talk to a person",
    "speak to an agent",
    "speak to a human",
    "speak to a person",
    "connect me to an agent",
];
const THANKS: &[&str] = &[
    "thanks",
    "thank you",
    "thx",
    "ty",
    "thanks a lot",
    "thank you so much",
    "thanks so much",
    "many thanks",
    "cheers",
    "great thanks",
    "ok thanks",
    "okay thanks",
    "ok thank you",
    "perfect thanks",
    "thanks for your help",
    "thank you for your help",
    "no thanks",
    "no thank you",
    "that's all thanks",
    "great",
    "perfect",
    "awesome",
    "got it",
];
const YES: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "yup",
    "y",
    "sure",
    "ok",
    "okay",
    "k",
    "correct",
    "right",
    "yes please",
    "yes it did",
    "it did",
    "that helped",
    "exactly",
];
const NO: &[&str] = &[
    "no",
    "nope",
    "nah",
    "n",
    "not really",
    "no it didn't",
    "it didn't",
    "that didn't help",
    "didn't help",
    "not helpful",
    "that's not it",
    "wrong",
    "that doesn't help",
    "doesn't help",
    "no that's wrong",
];

/// The follow-up `text` is, if it is only one: compared as lowercase words, ignoring
/// punctuation, so "Agent!" and "thank you :)" count.
pub fn follow_up(text: &str) -> Option<FollowUp> {
    let norm: String = text
        .to_lowercase()
        .replace('\u{2019}', "'")
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let norm = norm.split_whitespace().collect::<Vec<_>>().join(" ");
    [
        (GREETING, FollowUp::Greeting),
        (AGENT, FollowUp::Agent),
        (THANKS, FollowUp::Thanks),
        (YES, FollowUp::Yes),
        (NO, FollowUp::No),
    ]
    .into_iter()
    .find(|(list, _)| list.contains(&norm.as_str()))
    .map(|(_, f)| f)
}

/// The entry the assistant answered with in its last message before the last user
/// message, recognised by the answer text (the API is stateless: clients send the
/// conversation back).
pub fn last_answer(turns: &[Turn], entries: &[Entry]) -> Option<usize> {
    let last_user = turns.iter().rposition(|t| t.role == Role::User)?;
    let said = turns[..last_user]
        .iter()
        .rev()
        .find(|t| t.role == Role::Assistant)?;
    entries
        .iter()
        .position(|e| said.text.contains(e.answer.trim()))
}

/// The reply to a follow-up, given the entry answered last (if any), and its name for
/// `concur_retrieval.decision`.
pub fn reply(follow_up: FollowUp, answered: Option<&Entry>, r: &Replies) -> (String, &'static str) {
    let handover = || match answered {
        Some(e) => format!(
            "{} {}",
            r.handover,
            r.handover_topic.replace("{title}", &e.title)
        ),
        None => r.handover.clone(),
    };
    match (follow_up, answered) {
        (FollowUp::Greeting, _) => (r.greeting.clone(), "greeting"),
        (FollowUp::Agent, _) => (handover(), "handover"),
        (FollowUp::Thanks, _) => (r.thanks.clone(), "thanks"),
        (FollowUp::Yes, Some(_)) => (r.helped.clone(), "helped"),
        (FollowUp::Yes, None) => (r.prompt.clone(), "prompt"),
        (FollowUp::No, Some(_)) => (format!("{} {}", r.not_helped, handover()), "not_helped"),
        (FollowUp::No, None) => (handover(), "handover"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, answer: &str) -> Entry {
        Entry {
            id: id.into(),
            title: format!("Title {id}"),
            answer: answer.into(),
            accepts: vec![],
            questions: vec!["q".into()],
        }
    }

    fn replies() -> Replies {
        Replies {
            greeting: "G".into(),
            handover: "Email support@acme.example.".into(),
            handover_topic: "Mention \"{title}\".".into(),
            not_helped: "Sorry.".into(),
            thanks: "Welcome.".into(),
            helped: "Glad.".into(),
            prompt: "Ask.".into(),
        }
    }

    fn turn(role: Role, text: &str) -> Turn {
        Turn {
            role,
            text: text.into(),
        }
    }

    #[test]
    fn only_whole_follow_ups_count() {
        assert_eq!(follow_up("Agent!"), Some(FollowUp::Agent));
        assert_eq!(follow_up("  talk to a HUMAN "), Some(FollowUp::Agent));
        assert_eq!(follow_up("agent, where is my parcel?"), None);
        assert_eq!(follow_up("human please"), Some(FollowUp::Agent));
        assert_eq!(follow_up("Thank you :)"), Some(FollowUp::Thanks));
        assert_eq!(follow_up("no thanks"), Some(FollowUp::Thanks));
        assert_eq!(follow_up("Yes."), Some(FollowUp::Yes));
        assert_eq!(follow_up("it didn\u{2019}t"), Some(FollowUp::No));
        assert_eq!(follow_up("Hello!"), Some(FollowUp::Greeting));
        assert_eq!(follow_up("no confirmation email"), None);
        assert_eq!(follow_up("hi, where is my order?"), None);
        assert_eq!(follow_up(""), None);
    }

    #[test]
    fn the_last_answer_is_the_assistants_message_before_the_last_user_message() {
        let entries = [entry("a", "Answer A."), entry("b", "Answer B.")];
        let turns = [
            turn(Role::Other, "You are a bot"),
            turn(Role::User, "question"),
            turn(Role::Assistant, "Answer B."),
            turn(Role::User, "agent"),
        ];
        assert_eq!(last_answer(&turns, &entries), Some(1));
        assert_eq!(last_answer(&turns[..2], &entries), None);
        let fallback = [
            turn(Role::User, "q"),
            turn(Role::Assistant, "Sorry, no idea."),
            turn(Role::User, "no"),
        ];
        assert_eq!(last_answer(&fallback, &entries), None);
    }

    #[test]
    fn replies_use_the_topic_of_the_conversation() {
        let e = entry("b", "Answer B.");
        let r = replies();
        let (text, kind) = reply(FollowUp::Agent, Some(&e), &r);
        assert_eq!(kind, "handover");
        assert_eq!(text, "Email support@acme.example. Mention \"Title b\".");
        assert_eq!(
            reply(FollowUp::Agent, None, &r).0,
            "Email support@acme.example."
        );
        let (text, kind) = reply(FollowUp::No, Some(&e), &r);
        assert_eq!(kind, "not_helped");
        assert!(text.starts_with("Sorry. Email") && text.contains("Title b"));
        assert_eq!(reply(FollowUp::Yes, Some(&e), &r).1, "helped");
        assert_eq!(reply(FollowUp::Yes, None, &r).1, "prompt");
        assert_eq!(reply(FollowUp::No, None, &r).1, "handover");
        assert_eq!(reply(FollowUp::Thanks, None, &r).0, "Welcome.");
        assert_eq!(reply(FollowUp::Greeting, Some(&e), &r).0, "G");
    }
}
