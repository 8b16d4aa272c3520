//! `cophr device`: the keys that act for you (laptop, phone, glucometer).

use clap::{Args, Subcommand};
use cophr_node::session::Cancel;
use cophr_protocol::entry::Payload;
use cophr_protocol::record::DeviceInfo;
use cophr_protocol::ActorId;
use serde_json::json;

use crate::context::{self, Ctx, Out};
use crate::error::{parse_id, CliError, Result};
use crate::output::{self, Person, Table};
use crate::times;

/// Your devices: other keys that act for you in a record. On the device, `cophr init`
/// makes its key (`cophr whoami` prints it); here you add it; on the device, `cophr follow
/// RECORD` then replicates the record (the whole of it for the patient's devices, your
/// grants' share for a carer's or clinician's) and its writes count as yours: George amends
/// on his phone what he wrote on his laptop. Removing a device stops it from that point on;
/// what it wrote before stays.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Let a device's key act for you in the record
    Add(AddArgs),
    /// Stop a device from acting for you, from now on (what it wrote stays)
    Remove(RemoveArgs),
    /// List your devices in the record, removed ones included
    List(Out),
}

/// `cophr device add`.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  cophr device add a-… --label \"George's phone\"")]
pub struct AddArgs {
    /// The device's actor id (`a-…`: run `cophr whoami` on the device)
    device: String,
    /// What to call it (e.g. "George's phone")
    #[arg(long)]
    label: String,
    #[command(flatten)]
    out: Out,
}

/// `cophr device remove`.
#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The device's actor id (`a-…`, see `cophr device list`)
    device: String,
    /// Why (kept in the record, e.g. "phone lost")
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    out: Out,
}

/// Runs `device`.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Add(a) => add(ctx, a),
        Command::Remove(a) => remove(ctx, a),
        Command::List(out) => list(ctx, out),
    }
}

fn add(ctx: &Ctx, args: AddArgs) -> Result<()> {
    let device: ActorId = parse_id("device", &args.device)?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::AddDevice {
            device,
            label: args.label.trim().to_owned(),
        },
    )?;
    if ctx.json(args.out) {
        return output::json(&json!({ "record": record, "device": device, "added": id }));
    }
    output::line(format!(
        "Device {device} ({}) now acts for you in record {record} ({id}).",
        args.label.trim()
    ))?;
    output::line(format!(
        "On the device: `cophr follow {record}` (with --host ADDR if the DHT cannot find it)."
    ))
}

fn remove(ctx: &Ctx, args: RemoveArgs) -> Result<()> {
    let device: ActorId = parse_id("device", &args.device)?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::RemoveDevice {
            device,
            category: None,
            reason: args.reason.trim().to_owned(),
        },
    )?;
    if ctx.json(args.out) {
        return output::json(&json!({ "record": record, "device": device, "removed": id }));
    }
    output::line(format!(
        "Device {device} acts for no one in record {record} from now on ({id})."
    ))
}

fn list(ctx: &Ctx, out: Out) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let (owner, devices): (Person, Vec<DeviceInfo>) = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            let viewer = r.viewer(&me.actor(), now);
            if !viewer.has_access() {
                return Err(CliError::access("no access to this record"));
            }
            // Whose devices: the patient's when you act as the patient, else your own.
            let person = r.acts_for(&me.actor()).unwrap_or(me.actor());
            let devices = r.devices_of(&person);
            seen.add(devices.iter().map(|d| d.added));
            seen.detail(format!("devices: {}", devices.len()));
            Ok((Person::of(r, &person, None), devices))
        })?
    })?;
    if ctx.json(out) {
        return output::json(&json!({
            "record": record,
            "owner": owner,
            "devices": devices.iter().map(|d| json!({
                "device": d.device,
                "label": d.label,
                "added": d.added,
                "time": times::format(d.time),
                "removed": d.removed,
            })).collect::<Vec<_>>(),
        }));
    }
    if devices.is_empty() {
        return output::line(format!("{} has no devices in this record.", owner.short()));
    }
    let mut t = Table::new(&["DEVICE", "LABEL", "ADDED", "STATUS"]);
    for d in &devices {
        t.row(vec![
            d.device.to_string(),
            d.label.clone(),
            times::format(d.time),
            match d.removed {
                Some(r) => format!("removed ({})", r.short()),
                None => "active".into(),
            },
        ]);
    }
    output::line(format!("Devices of {}:", owner.short()))?;
    output::print(&t.render())
}
