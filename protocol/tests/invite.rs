//! Invitations over the sync server: the patient registers an offer with the home host,
//! the invitee accepts it with the link's secret, the patient reads who accepted and closes
//! it. A used, expired, forged or unknown invitation opens nothing; only the patient reads
//! or changes the record's invitations.

use cophr_protocol::access::{Level, Scope};
use cophr_protocol::invite::{Invitation, InvitationBox, Terms};
use cophr_protocol::sync::mem::MemStore;
use cophr_protocol::sync::server::{HostPolicy, Peer, Server};
use cophr_protocol::sync::{Proof, Refusal, Request, Response};
use cophr_protocol::testkit::{key, profile, Fixture};
use cophr_protocol::Keypair;

const DAY: u64 = 24 * 3600 * 1000;

fn peer(name: &str) -> Peer {
    Peer {
        id: name.as_bytes().to_vec(),
        label: format!("peer {name}"),
    }
}

struct Host {
    server: Server,
    store: MemStore,
    nonce: u128,
}

impl Host {
    fn ask(
        &mut self,
        who: &Keypair,
        f: &Fixture,
        req: impl FnOnce(Proof) -> Request,
        now: u64,
    ) -> Response {
        self.nonce += 1;
        let proof = Proof::new(
            who,
            f.record.id(),
            b"client",
            b"server",
            self.nonce.to_le_bytes(),
            now,
        );
        self.server
            .handle(&mut self.store, &peer("client"), req(proof), now)
            .0
    }
}

fn host_of(f: &Fixture) -> Host {
    let mut store = MemStore::new(key(7, "host"));
    for e in f.record.entries() {
        store.write(e.clone()).unwrap();
    }
    Host {
        server: Server::new(b"server".to_vec(), HostPolicy::default()),
        store,
        nonce: 0,
    }
}

fn terms() -> Terms {
    Terms {
        level: Level::View,
        scope: Scope::All,
        not_before: None,
        until: None,
        audit: false,
        delegate: false,
        label: Some("Pharmacy".into()),
        requires: None,
    }
}

fn refusal(r: Response) -> Refusal {
    match r {
        Response::Refused { code, .. } => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_invitation_is_offered_accepted_once_read_by_the_patient_and_closed() {
    let f = Fixture::new(50, "George");
    let george = f.patient.clone();
    let (rena, eve) = (key(50, "Rena"), key(50, "Eve"));
    let now = f.now;
    let mut host = host_of(&f);
    let inv = Invitation::new(
        f.record.id(),
        [9; 32],
        b"server".to_vec(),
        vec!["/ip4/127.0.0.1/tcp/1".into()],
        now + 7 * DAY,
        "George".into(),
        Some("Pharmacy".into()),
        now,
    )
    .unwrap();
    let offer = inv.offer(terms(), now).unwrap();

    // Only the patient registers offers.
    let by_eve = host.ask(
        &eve,
        &f,
        |proof| Request::OfferInvitation {
            proof,
            offer: serde_bytes::ByteBuf::from(offer.encode()),
        },
        now,
    );
    assert_eq!(refusal(by_eve), Refusal::NoAccess);
    let r = host.ask(
        &george,
        &f,
        |proof| Request::OfferInvitation {
            proof,
            offer: serde_bytes::ByteBuf::from(offer.encode()),
        },
        now,
    );
    assert!(matches!(r, Response::Ack), "{r:?}");

    // Rena accepts with the link's secret.
    let acc = inv
        .accept(
            rena.actor(),
            profile("Rena Shah", "pharmacist", None),
            [1; 16],
            now,
        )
        .unwrap();
    let accept = |a: &cophr_protocol::invite::SignedAcceptance| {
        let bytes = a.encode();
        move |proof| Request::AcceptInvitation {
            proof,
            acceptance: serde_bytes::ByteBuf::from(bytes),
        }
    };
    // Eve cannot send Rena's acceptance as her own.
    assert_eq!(
        refusal(host.ask(&eve, &f, accept(&acc), now)),
        Refusal::InvitationInvalid
    );
    assert!(matches!(
        host.ask(&rena, &f, accept(&acc), now),
        Response::Ack
    ));
    // Used: a replay, or a fresh acceptance by someone else with the link, opens nothing.
    assert_eq!(
        refusal(host.ask(&rena, &f, accept(&acc), now)),
        Refusal::InvitationUsed
    );
    let eve_acc = inv
        .accept(
            eve.actor(),
            profile("Eve", "pharmacist", None),
            [2; 16],
            now,
        )
        .unwrap();
    assert_eq!(
        refusal(host.ask(&eve, &f, accept(&eve_acc), now)),
        Refusal::InvitationUsed
    );

    // Only the patient reads the box; it shows who accepted.
    assert_eq!(
        refusal(host.ask(&rena, &f, |proof| Request::Invitations { proof }, now)),
        Refusal::NoAccess
    );
    let bytes = match host.ask(&george, &f, |proof| Request::Invitations { proof }, now) {
        Response::Invitations { invitations } => invitations,
        other => panic!("{other:?}"),
    };
    let b = InvitationBox::decode(&bytes).unwrap();
    let accepted = b.offers[0].accepted.as_ref().unwrap();
    assert_eq!(accepted.acceptance.invitee, rena.actor());
    assert_eq!(accepted.acceptance.profile.name, "Rena Shah");

    // Closed: gone.
    let id = inv.id();
    assert!(matches!(
        host.ask(
            &george,
            &f,
            |proof| Request::CloseInvitation { proof, id },
            now
        ),
        Response::Ack
    ));
    let bytes = match host.ask(&george, &f, |proof| Request::Invitations { proof }, now) {
        Response::Invitations { invitations } => invitations,
        other => panic!("{other:?}"),
    };
    assert!(InvitationBox::decode(&bytes).unwrap().offers.is_empty());
}

#[test]
fn expired_forged_and_unknown_invitations_open_nothing() {
    let f = Fixture::new(51, "George");
    let george = f.patient.clone();
    let rena = key(51, "Rena");
    let now = f.now;
    let mut host = host_of(&f);
    let inv = Invitation::new(
        f.record.id(),
        [3; 32],
        b"server".to_vec(),
        vec!["/ip4/127.0.0.1/tcp/1".into()],
        now + DAY,
        "George".into(),
        None,
        now,
    )
    .unwrap();
    let offer = inv.offer(terms(), now).unwrap();
    host.ask(
        &george,
        &f,
        |proof| Request::OfferInvitation {
            proof,
            offer: serde_bytes::ByteBuf::from(offer.encode()),
        },
        now,
    );
    // Expired (accepted two days later, with a fresh acceptance).
    let later = now + 2 * DAY;
    let late = inv
        .accept(
            rena.actor(),
            profile("Rena", "pharmacist", None),
            [4; 16],
            later,
        )
        .unwrap();
    let r = host.ask(
        &rena,
        &f,
        |proof| Request::AcceptInvitation {
            proof,
            acceptance: serde_bytes::ByteBuf::from(late.encode()),
        },
        later,
    );
    assert_eq!(refusal(r), Refusal::InvitationExpired);
    // Without the secret: signed with another invitation's key but naming this one.
    let mut guess = inv.clone();
    guess.secret = [4; 32];
    let mut forged = guess
        .accept(
            rena.actor(),
            profile("Rena", "pharmacist", None),
            [5; 16],
            now,
        )
        .unwrap();
    forged.acceptance.invitation = inv.id();
    let r = host.ask(
        &rena,
        &f,
        |proof| Request::AcceptInvitation {
            proof,
            acceptance: serde_bytes::ByteBuf::from(forged.encode()),
        },
        now,
    );
    assert_eq!(refusal(r), Refusal::InvitationInvalid);
    // An invitation the host never heard of.
    let unknown = guess
        .accept(
            rena.actor(),
            profile("Rena", "pharmacist", None),
            [6; 16],
            now,
        )
        .unwrap();
    let r = host.ask(
        &rena,
        &f,
        |proof| Request::AcceptInvitation {
            proof,
            acceptance: serde_bytes::ByteBuf::from(unknown.encode()),
        },
        now,
    );
    assert_eq!(refusal(r), Refusal::InvitationInvalid);
    // Garbage.
    let r = host.ask(
        &rena,
        &f,
        |proof| Request::AcceptInvitation {
            proof,
            acceptance: serde_bytes::ByteBuf::from(vec![0xff; 64]),
        },
        now,
    );
    assert_eq!(refusal(r), Refusal::InvitationInvalid);
}
