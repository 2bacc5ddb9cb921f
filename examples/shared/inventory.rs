//! The player's inventory and the two tools the examples' NPCs use on it.

use bevy::prelude::*;
use bevy_live_npc::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

/// What the player carries.
#[derive(Resource)]
pub struct Inventory(pub Vec<(String, u32)>);

/// `check_inventory`: lists what the player carries.
pub fn check_inventory(In(_): In<ToolInput>, inventory: Res<Inventory>) -> ToolResult {
    Ok(inventory.0.iter().map(|(item, count)| json!({"item": item, "count": count})).collect())
}

/// An item to give the player.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GiveItem {
    /// What to give.
    item: String,
    /// How many.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 20))]
    count: u32,
}

fn one() -> u32 {
    1
}

/// `give_item`: adds an item to the inventory.
pub fn give_item(In(input): In<ToolInput<GiveItem>>, mut inventory: ResMut<Inventory>) -> ToolResult {
    let GiveItem { item, count } = input.args;
    match inventory.0.iter_mut().find(|(name, _)| *name == item) {
        Some((_, have)) => *have += count,
        None => inventory.0.push((item.clone(), count)),
    }
    Ok(json!({"gave": item, "count": count}))
}

/// Registers both tools.
pub fn add_inventory_tools(app: &mut App) {
    app.add_npc_tool(NpcTool::new("check_inventory", "Lists what the player carries.").run(check_inventory))
        .add_npc_tool(NpcTool::new("give_item", "Gives the player an item.").run(give_item));
}
