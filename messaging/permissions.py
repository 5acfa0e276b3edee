from community.permissions import define

VIEW_DELIVERIES = define("messaging.view_deliveries", [])
