//! The other signed objects peers and files bring: audit events, home pointers,
//! attestations and their revocations, invitation links, offers, acceptances and boxes,
//! encrypted key backups.
#![no_main]

use cophr_protocol::audit::SignedAudit;
use cophr_protocol::backup::KeyBackup;
use cophr_protocol::home::SignedPointer;
use cophr_protocol::invite::{Invitation, InvitationBox, Offer, SignedAcceptance};
use cophr_protocol::testkit::key;
use cophr_protocol::trust::{SignedAttestation, SignedRevocation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SignedAudit::decode(data);
    let _ = SignedPointer::decode(data, &key(1, "George").actor());
    let _ = SignedAttestation::decode(data);
    let _ = SignedRevocation::decode(data);
    let _ = Offer::decode(data);
    let _ = SignedAcceptance::decode(data);
    let _ = InvitationBox::decode(data);
    let _ = KeyBackup::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Invitation::from_link(text);
        let _ = SignedAttestation::from_text(text);
    }
});
