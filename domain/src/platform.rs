//! The platforms Herald publishes to.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A social platform. The string form (`x`, `youtube`, ...) is the one used in URLs and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    X,
    Youtube,
    Tiktok,
    Instagram,
    FacebookPages,
    Linkedin,
    Threads,
    Reddit,
}

impl Platform {
    pub const ALL: [Platform; 8] = [
        Platform::X,
        Platform::Youtube,
        Platform::Tiktok,
        Platform::Instagram,
        Platform::FacebookPages,
        Platform::Linkedin,
        Platform::Threads,
        Platform::Reddit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::X => "x",
            Platform::Youtube => "youtube",
            Platform::Tiktok => "tiktok",
            Platform::Instagram => "instagram",
            Platform::FacebookPages => "facebook_pages",
            Platform::Linkedin => "linkedin",
            Platform::Threads => "threads",
            Platform::Reddit => "reddit",
        }
    }

    /// The platform's own name, for messages people read.
    pub fn display_name(self) -> &'static str {
        match self {
            Platform::X => "X",
            Platform::Youtube => "YouTube",
            Platform::Tiktok => "TikTok",
            Platform::Instagram => "Instagram",
            Platform::FacebookPages => "Facebook",
            Platform::Linkedin => "LinkedIn",
            Platform::Threads => "Threads",
            Platform::Reddit => "Reddit",
        }
    }

    /// The platforms whose connections one login can make: a Facebook login connects Pages
    /// and the Instagram accounts linked to them, and Facebook grants its permissions per
    /// person, not per token. Every other login connects only its own platform.
    pub fn login_family(self) -> &'static [Platform] {
        match self {
            Platform::FacebookPages | Platform::Instagram => {
                &[Platform::FacebookPages, Platform::Instagram]
            }
            Platform::X => &[Platform::X],
            Platform::Youtube => &[Platform::Youtube],
            Platform::Tiktok => &[Platform::Tiktok],
            Platform::Linkedin => &[Platform::Linkedin],
            Platform::Threads => &[Platform::Threads],
            Platform::Reddit => &[Platform::Reddit],
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name did not match any platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown platform '{0}'; expected one of x, youtube, tiktok, instagram, facebook_pages, linkedin, threads, reddit")]
pub struct UnknownPlatform(pub String);

impl FromStr for Platform {
    type Err = UnknownPlatform;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == lower || (lower == "twitter" && *p == Platform::X))
            .ok_or_else(|| UnknownPlatform(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_platform_and_the_twitter_alias() {
        for p in Platform::ALL {
            assert_eq!(p.as_str().parse::<Platform>(), Ok(p));
        }
        assert_eq!("Twitter".parse::<Platform>(), Ok(Platform::X));
        assert_eq!(
            "myspace".parse::<Platform>(),
            Err(UnknownPlatform("myspace".into()))
        );
    }

    #[test]
    fn a_facebook_login_connects_pages_and_instagram_and_nothing_else_shares_a_login() {
        for p in Platform::ALL {
            let family = p.login_family();
            assert!(family.contains(&p), "{p}");
            for other in family {
                assert_eq!(other.login_family(), family, "{p} and {other}");
            }
        }
        assert_eq!(
            Platform::Instagram.login_family(),
            [Platform::FacebookPages, Platform::Instagram]
        );
        assert_eq!(Platform::Threads.login_family(), [Platform::Threads]);
    }
}
