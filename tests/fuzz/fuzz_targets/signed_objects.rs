//! The other signed objects peers and files bring: audit events, home pointers,
//! attestations and their revocations, invitation links, offers, acceptances and boxes,
//! encrypted key backups, recovery requests and guardians' approvals, emergency summary
//! shares handed to a host, sealed content.
#![no_main]

use cophr_protocol::audit::SignedAudit;
use cophr_protocol::backup::KeyBackup;
use cophr_protocol::home::SignedPointer;
use cophr_protocol::invite::{Invitation, InvitationBox, Offer, SignedAcceptance};
use cophr_protocol::recovery::{GuardianApproval, RecoveryRequest};
use cophr_protocol::seal::{self, EpochKey, Place, Sealed};
use cophr_protocol::share::{self, Share, ShareId};
use cophr_protocol::testkit::key;
use cophr_protocol::trust::{SignedAttestation, SignedRevocation};
use libfuzzer_sys::fuzz_target;

fn sample_share() -> Share {
    Share::new(
        ShareId([1; 16]),
        key(1, "George").actor(),
        1_700_000_000_000,
        3_600_000,
        None,
        Vec::new(),
    )
    .expect("a valid share")
}

fuzz_target!(|data: &[u8]| {
    let _ = SignedAudit::decode(data);
    let _ = SignedPointer::decode(data, &key(1, "George").actor());
    let _ = SignedAttestation::decode(data);
    let _ = SignedRevocation::decode(data);
    let _ = Offer::decode(data);
    let _ = SignedAcceptance::decode(data);
    let _ = InvitationBox::decode(data);
    let _ = KeyBackup::decode(data);
    if let Ok(share) = Share::decode(data) {
        let _ = share::check_hosted(&share, data, &share.record, 1_700_000_000_000);
    }
    let _ = share::check_hosted(
        &sample_share(),
        data,
        &key(1, "George").actor(),
        1_700_000_000_000,
    );
    if let Ok(sealed) = Sealed::decode(data) {
        let record = key(1, "George").actor();
        let place = Place {
            record: &record,
            stream: "allergies",
            epoch: sealed.epoch,
        };
        let _ = seal::open(&EpochKey([7; 32]), place, &record, &sealed);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Invitation::from_link(text);
        let _ = SignedAttestation::from_text(text);
        let _ = RecoveryRequest::from_text(text);
        let _ = GuardianApproval::from_text(text);
    }
});
