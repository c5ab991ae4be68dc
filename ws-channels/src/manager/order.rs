//! The order gate of each channel on this node: publications pass in
//! offset order, a duplicate is dropped, one ahead of its turn waits while
//! the gap is read from history, a gap history no longer holds becomes a
//! `lost` event; and the position checks that find a dropped tail.

use super::*;

/// Where a channel's stream of publications is on this node: offsets
/// reach members once and in order, whatever the broker does (a
/// publication dropped on the way, two swapped, one delivered twice).
#[derive(Debug)]
pub(super) struct Order {
    pub(super) epoch: String,
    /// The offset of the last publication handed to members.
    pub(super) delivered: u64,
    /// Publications that arrived ahead of a gap, by offset, at most
    /// `max_recovery_buffer` of them and [`MAX_AHEAD_BYTES`]: what does
    /// not fit is read from history with the gap.
    pub(super) ahead: BTreeMap<u64, Publication>,
    /// The weights of `ahead`.
    pub(super) ahead_bytes: usize,
    /// A history read for the gap is in flight.
    pub(super) filling: bool,
}

/// Bytes of publications a channel keeps waiting behind a gap on one
/// node; past it they are dropped and read from history with the gap (or
/// found by the next position check).
pub(super) const MAX_AHEAD_BYTES: usize = 4 << 20;

impl Order {
    /// An order whose next publication is `position`.
    pub(super) fn before(position: &Position) -> Self {
        Self::after(&Position {
            offset: position.offset.saturating_sub(1),
            epoch: position.epoch.clone(),
        })
    }

    /// An order that handed out everything up to `position`.
    pub(super) fn after(position: &Position) -> Self {
        Self {
            epoch: position.epoch.clone(),
            delivered: position.offset,
            ahead: BTreeMap::new(),
            ahead_bytes: 0,
            filling: false,
        }
    }

    /// The last position handed to members.
    fn position(&self) -> Position {
        Position {
            offset: self.delivered,
            epoch: self.epoch.clone(),
        }
    }

    /// Keeps `publication` until the gap before it is filled, if there
    /// is room.
    pub(super) fn wait(&mut self, offset: u64, publication: &Publication, max_count: usize) {
        let weight = publication.weight();
        if self.ahead.len() < max_count
            && self.ahead_bytes + weight <= MAX_AHEAD_BYTES
            && !self.ahead.contains_key(&offset)
        {
            self.ahead_bytes += weight;
            self.ahead.insert(offset, publication.clone());
        }
    }
}

/// A channel's members as a publication sees them.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Ready {
    /// Active, nothing lost, not closing: they take the publication as
    /// it is.
    pub(super) sessions: Arc<[SessionId]>,
    /// Recovering (they buffer it) or owed a `lost` event first.
    pub(super) others: Vec<SessionId>,
}

impl Ready {
    pub(super) fn of(
        name: &str,
        members: &BTreeSet<SessionId>,
        sessions: &HashMap<SessionId, Session>,
    ) -> Self {
        let mut ready = Vec::with_capacity(members.len());
        let mut others = Vec::new();
        for id in members {
            let Some(session) = sessions.get(id).filter(|s| !s.closing) else {
                continue;
            };
            let Some(membership) = session.channels.get(name) else {
                continue;
            };
            if matches!(membership.stage, Stage::Active)
                && !membership.lost
                && membership.floor.is_none()
            {
                ready.push(*id);
            } else {
                others.push(*id);
            }
        }
        Self {
            sessions: ready.into(),
            others,
        }
    }
}

/// The publications that waited for what `order` has now delivered, in
/// order; those at or before it are dropped as duplicates.
pub(super) fn drain_ahead(order: &mut Order) -> Vec<Publication> {
    drain_ahead_within(order, &mut Budget::unbounded()).0
}

/// Bytes a gap's fill may still hand out. The first publication goes
/// whatever its size, so a gap always moves on.
struct Budget {
    left: usize,
    taken: bool,
}

impl Budget {
    fn new(bytes: usize) -> Self {
        Self {
            left: bytes,
            taken: false,
        }
    }

    fn unbounded() -> Self {
        Self::new(usize::MAX)
    }

    /// Whether a publication of `weight` fits; if so it is taken.
    fn take(&mut self, weight: usize) -> bool {
        if self.taken && weight > self.left {
            return false;
        }
        self.left = self.left.saturating_sub(weight);
        self.taken = true;
        true
    }
}

/// Like [`drain_ahead`], within `budget`; `false` when some of what
/// follows on did not fit (it stays in `order.ahead`).
fn drain_ahead_within(order: &mut Order, budget: &mut Budget) -> (Vec<Publication>, bool) {
    let mut out = Vec::new();
    while let Some(entry) = order.ahead.first_entry() {
        let offset = *entry.key();
        if offset > order.delivered + 1 {
            break;
        }
        let next = offset == order.delivered + 1;
        if next {
            if !budget.take(entry.get().weight()) {
                return (out, false);
            }
            order.delivered = offset;
        }
        let publication = entry.remove();
        order.ahead_bytes -= publication.weight();
        if next {
            out.push(publication);
        }
    }
    (out, true)
}

/// What a gap's fill hands out, in order.
enum Step {
    Deliver(Publication),
    Lost(Position),
}

/// Moves `order`'s stream on past everything known to be there: what
/// waited behind a gap (let go: the members were told `lost` and read it
/// from history), or else the history's newest, `top`.
fn skip_past(order: &mut Order, top: Option<&Position>) {
    if let Some((&last, _)) = order.ahead.last_key_value() {
        order.delivered = order.delivered.max(last);
        order.ahead.clear();
        order.ahead_bytes = 0;
    } else if let Some(top) = top {
        if top.epoch == order.epoch {
            order.delivered = order.delivered.max(top.offset);
        } else {
            *order = Order::after(top);
        }
    }
}

impl ChannelManager {
    /// What of `publication` (and what waited behind it) goes out now, in
    /// order; starts a history read when it came after a gap.
    pub(super) fn in_order(
        &mut self,
        channel: &str,
        position: &Position,
        publication: &Publication,
    ) -> Vec<Publication> {
        let max_ahead = self.config.max_recovery_buffer;
        let Some(local) = self.channels.get_mut(channel) else {
            return Vec::new();
        };
        let order = local.order.get_or_insert_with(|| Order::before(position));
        if order.epoch != position.epoch {
            // A new history (the broker lost the old one, or the channel
            // was made anew): it starts here.
            *order = Order::before(position);
        }
        if position.offset <= order.delivered {
            return Vec::new();
        }
        if position.offset > order.delivered + 1 {
            order.wait(position.offset, publication, max_ahead);
            if !order.filling {
                self.read_after_delivered(channel, false);
            }
            return Vec::new();
        }
        order.delivered = position.offset;
        let mut out = vec![publication.clone()];
        out.extend(drain_ahead(order));
        out
    }

    /// A gap's history read came back: what it holds goes out in order,
    /// then what waited behind the gap, together at most
    /// `max_gap_fill_bytes`. A gap it cannot fill, or that does not fit,
    /// is a `lost` event to every member with the last position they
    /// have, and the stream goes on after it.
    pub(super) fn filled(
        &mut self,
        channel: &str,
        epoch: &str,
        check: bool,
        result: Result<HistoryPage, ChannelError>,
    ) {
        let mut budget = Budget::new(self.config.max_gap_fill_bytes);
        let Some(order) = self
            .channels
            .get_mut(channel)
            .and_then(|local| local.order.as_mut())
            .filter(|order| order.epoch == epoch)
        else {
            return;
        };
        order.filling = false;
        if check && result.is_err() && order.ahead.is_empty() {
            // Nothing is known to be missing: the next check asks again
            // (and a broker that failed tells every member `lost` when it
            // is back).
            return;
        }
        // What the members get, in order: publications, and where the
        // gap is given up on, a `lost` event with the last position they
        // have.
        let mut steps = Vec::new();
        let (whole, top) = match result {
            Ok(page) if page.complete => {
                let mut whole = true;
                for publication in page.publications {
                    let Some(offset) = publication.position.as_ref().map(|p| p.offset) else {
                        continue;
                    };
                    if offset == order.delivered + 1 {
                        if !budget.take(publication.weight()) {
                            whole = false;
                            break;
                        }
                        order.delivered = offset;
                        steps.push(Step::Deliver(publication));
                    }
                }
                (whole, page.top)
            }
            // Not in history any more (or unreadable).
            result => (false, result.ok().and_then(|page| page.top)),
        };
        if !whole {
            // The stream goes on after the gap: at what waited behind it,
            // else after the history's newest.
            steps.push(Step::Lost(order.position()));
            match order.ahead.keys().next() {
                Some(&first) => order.delivered = order.delivered.max(first - 1),
                None => skip_past(order, top.as_ref()),
            }
        }
        let (behind, fits) = drain_ahead_within(order, &mut budget);
        if fits || whole {
            steps.extend(behind.into_iter().map(Step::Deliver));
        }
        if !fits {
            // What waited does not fit after the fill: the members are
            // told (once) and read it from history themselves.
            if whole {
                steps.push(Step::Lost(order.position()));
            }
            skip_past(order, None);
        }
        let gap_remains = !order.ahead.is_empty();
        for step in steps {
            match step {
                Step::Deliver(publication) => self.fan_out(channel, &publication),
                Step::Lost(position) => {
                    let members: Vec<SessionId> = self
                        .channels
                        .get(channel)
                        .map(|c| c.members.iter().copied().collect())
                        .unwrap_or_default();
                    let data = json!({ "offset": position.offset, "epoch": position.epoch });
                    self.tell_lost(channel, members.into(), data);
                }
            }
        }
        if gap_remains
            && self
                .channels
                .get(channel)
                .and_then(|c| c.order.as_ref())
                .is_some_and(|order| !order.filling)
        {
            // Another gap further on: read it too.
            self.read_after_delivered(channel, false);
        }
    }

    /// Reads `channel`'s history after what its members were handed: to
    /// fill a gap, or (`check`) to find a tail that never arrived.
    pub(super) fn read_after_delivered(&mut self, channel: &str, check: bool) {
        let Some(order) = self
            .channels
            .get_mut(channel)
            .and_then(|c| c.order.as_mut())
        else {
            return;
        };
        order.filling = true;
        let since = Position {
            offset: order.delivered,
            epoch: order.epoch.clone(),
        };
        let epoch = order.epoch.clone();
        let limit = self.config.max_recovery;
        self.op(
            Operation::History {
                channel: channel.to_owned(),
                since: Some(since),
                limit,
            },
            Pending::Fill {
                channel: channel.to_owned(),
                epoch,
                check,
            },
        );
    }

    /// Asks each channel's history whether publications came after the
    /// last one its members were handed: a publication the broker dropped
    /// with nothing after it would otherwise never be noticed. What the
    /// history holds is delivered; what it no longer holds is a `lost`
    /// event.
    pub(super) fn check_positions(&mut self) {
        let due: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, local)| local.order.as_ref().is_some_and(|o| !o.filling))
            .map(|(name, _)| name.clone())
            .collect();
        for channel in due {
            self.read_after_delivered(&channel, true);
        }
    }
}
