//! Who the player is talking to: the code-forced NPC, else the one in range the listener faces
//! most directly, else the nearest in range; and where the microphone sends (`MicRoute`).

use bevy::prelude::*;

use super::components::{InEngageRange, MicRoute, NpcConversation, NpcFocus};
use crate::npc::{LiveNpc, NpcListener};
use crate::schedule::LiveNpcSystems;
use crate::session::SessionCommand;
use crate::settings::LiveNpcSettings;

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<NpcFocus>()
        .init_resource::<MicRoute>()
        .add_systems(Update, update_focus.in_set(LiveNpcSystems::Targeting));
}

type FocusCandidate =
    (Entity, &'static GlobalTransform, Option<&'static InEngageRange>, Option<&'static mut NpcConversation>);

/// Chooses the focused NPC: the one code focused, else the NPC in range the listener faces
/// most directly, else the nearest in range. Marks NPCs in range.
pub fn update_focus(
    mut commands: Commands,
    settings: Res<LiveNpcSettings>,
    mut focus: ResMut<NpcFocus>,
    route: Res<MicRoute>,
    listeners: Query<&GlobalTransform, With<NpcListener>>,
    mut npcs: Query<FocusCandidate, With<LiveNpc>>,
) {
    let listener = listeners.iter().next();
    let mut best: Option<(Entity, f32)> = None;
    let cos_limit = settings.facing_angle_deg.to_radians().cos();
    for (entity, transform, in_range, _) in &npcs {
        let Some(listener) = listener else {
            break;
        };
        let to_npc = transform.translation() - listener.translation();
        let distance = to_npc.length();
        let inside = distance <= settings.engage_radius;
        match (inside, in_range.is_some()) {
            (true, false) => {
                commands.entity(entity).insert(InEngageRange);
            }
            // A little hysteresis so standing on the edge does not flap.
            (false, true) if distance > settings.engage_radius * 1.1 => {
                commands.entity(entity).remove::<InEngageRange>();
            }
            _ => {}
        }
        if !inside {
            continue;
        }
        let facing = if distance > 1e-3 { listener.forward().dot(to_npc / distance) } else { 1.0 };
        // Faced NPCs win over merely near ones; among faced ones the most central wins.
        let score = if facing >= cos_limit { 10.0 + facing } else { 1.0 / (1.0 + distance) };
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((entity, score));
        }
    }
    if let Some(forced) = focus.forced
        && npcs.get(forced).is_err()
    {
        focus.forced = None;
    }
    let next = focus.forced.or(best.map(|(e, _)| e));
    let previous = focus.current;
    if next != previous {
        // Close the half-sent turn of the NPC losing focus.
        if let Some(prev) = previous
            && let Ok((_, _, _, Some(mut conv))) = npcs.get_mut(prev)
        {
            close_open_activity(&mut conv, prev);
        }
        focus.current = next;
    }
    let target = next.and_then(|e| npcs.get(e).ok()).and_then(|(e, _, _, c)| c.map(|c| (e, c.mic())));
    let current_route = route.get().map(|(e, _)| e);
    if current_route != target.as_ref().map(|(e, _)| *e) {
        route.set(target);
    }
}

fn close_open_activity(conv: &mut NpcConversation, npc: Entity) {
    if conv.activity_open {
        conv.activity_open = false;
        if conv.session.send(SessionCommand::ActivityEnd).is_err() {
            warn!("could not close the player's turn with {npc:?}: its command queue is full");
        }
    } else {
        let _ = conv.session.send(SessionCommand::AudioStreamEnd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SessionHandle, SessionPeer};

    fn app() -> App {
        let mut app = App::new();
        app.add_plugins(MinimalPlugins)
            .insert_resource(LiveNpcSettings::default())
            .init_resource::<NpcFocus>()
            .init_resource::<MicRoute>()
            .add_systems(Update, update_focus);
        app.world_mut().spawn((NpcListener, GlobalTransform::IDENTITY));
        app
    }

    fn npc(app: &mut App, name: &str, at: Vec3) -> Entity {
        app.world_mut().spawn((LiveNpc::new(name), GlobalTransform::from_translation(at))).id()
    }

    fn focused(app: &App) -> Option<Entity> {
        app.world().resource::<NpcFocus>().current()
    }

    fn in_range(app: &App, e: Entity) -> bool {
        app.world().get::<InEngageRange>(e).is_some()
    }

    fn converse(app: &mut App, e: Entity) -> SessionPeer {
        let (handle, peer) = SessionHandle::pair(8);
        let conv = NpcConversation::new(handle, &LiveNpc::new("x"), 0.0, false);
        app.world_mut().entity_mut(e).insert(conv);
        peer
    }

    #[test]
    fn the_faced_npc_wins_over_a_nearer_one_beside() {
        let mut app = app();
        // The listener looks down -Z.
        let ahead = npc(&mut app, "Ahead", Vec3::new(0.0, 0.0, -3.0));
        let beside = npc(&mut app, "Beside", Vec3::new(1.5, 0.0, 0.0));
        app.update();
        assert_eq!(focused(&app), Some(ahead));
        assert!(in_range(&app, ahead) && in_range(&app, beside));
    }

    #[test]
    fn without_a_faced_npc_the_nearest_in_range_wins_and_none_out_of_range() {
        let mut app = app();
        let far_side = npc(&mut app, "Far", Vec3::new(3.0, 0.0, 0.0));
        let near_side = npc(&mut app, "Near", Vec3::new(-2.0, 0.0, 0.0));
        let away = npc(&mut app, "Away", Vec3::new(0.0, 0.0, -10.0));
        app.update();
        assert_eq!(focused(&app), Some(near_side));
        assert!(in_range(&app, far_side) && !in_range(&app, away));

        for e in [far_side, near_side] {
            app.world_mut().entity_mut(e).insert(GlobalTransform::from_translation(Vec3::new(0.0, 0.0, 20.0)));
        }
        app.update();
        assert_eq!(focused(&app), None, "nobody in range, nobody focused");
    }

    #[test]
    fn the_range_edge_has_hysteresis() {
        let mut app = app();
        let e = npc(&mut app, "Edge", Vec3::new(0.0, 0.0, -3.9));
        app.update();
        assert!(in_range(&app, e));
        // Just past the radius (4.0) but within 10 % of it: still marked in range, not focused.
        app.world_mut().entity_mut(e).insert(GlobalTransform::from_translation(Vec3::new(0.0, 0.0, -4.2)));
        app.update();
        assert!(in_range(&app, e));
        assert_eq!(focused(&app), None);
        app.world_mut().entity_mut(e).insert(GlobalTransform::from_translation(Vec3::new(0.0, 0.0, -4.5)));
        app.update();
        assert!(!in_range(&app, e));
    }

    #[test]
    fn forced_focus_wins_until_its_npc_is_gone() {
        let mut app = app();
        let near = npc(&mut app, "Near", Vec3::new(0.0, 0.0, -2.0));
        let far = npc(&mut app, "Far", Vec3::new(0.0, 0.0, -50.0));
        app.world_mut().resource_mut::<NpcFocus>().set(Some(far));
        app.update();
        assert_eq!(focused(&app), Some(far));
        app.world_mut().despawn(far);
        app.update();
        assert_eq!(focused(&app), Some(near));
        assert_eq!(app.world().resource::<NpcFocus>().forced(), None);
    }

    #[test]
    fn losing_focus_closes_the_half_sent_turn_and_moves_the_mic() {
        let mut app = app();
        let a = npc(&mut app, "A", Vec3::new(0.0, 0.0, -2.0));
        let b = npc(&mut app, "B", Vec3::new(0.0, 0.0, -30.0));
        let mut peer_a = converse(&mut app, a);
        let _peer_b = converse(&mut app, b);
        app.world_mut().get_mut::<NpcConversation>(a).expect("conversation").activity_open = true;
        app.update();
        assert_eq!(app.world().resource::<MicRoute>().get().map(|(e, _)| e), Some(a));

        app.world_mut().resource_mut::<NpcFocus>().set(Some(b));
        app.update();
        assert!(matches!(peer_a.try_command(), Some(SessionCommand::ActivityEnd)), "manual VAD: activityEnd");
        assert!(!app.world().get::<NpcConversation>(a).expect("conversation").activity_open);
        assert_eq!(app.world().resource::<MicRoute>().get().map(|(e, _)| e), Some(b));

        // Automatic VAD (no open activity): the stream end goes out instead.
        app.world_mut().resource_mut::<NpcFocus>().set(Some(a));
        app.update();
        app.world_mut().resource_mut::<NpcFocus>().set(Some(b));
        app.update();
        assert!(matches!(peer_a.try_command(), Some(SessionCommand::AudioStreamEnd)));
    }
}
