<?php
/**
 * Plugin Name:          Returns Connector
 * Plugin URI:           https://returns.example.com/
 * Description:          Self-service returns for WooCommerce: a Returns tab and a Return button in My Account, a [returns_portal] shortcode, and one-click refunds from the order screen, through the Returns Connector.
 * Version:              1.0.0
 * Requires at least:    6.2
 * Requires PHP:         7.4
 * Requires Plugins:     woocommerce
 * WC requires at least: 8.2
 * WC tested up to:      10.0
 * Author:               Returns Connector
 * License:              GPL-2.0-or-later
 * License URI:          https://www.gnu.org/licenses/gpl-2.0.html
 * Text Domain:          returns-connector
 * Domain Path:          /languages
 *
 * @package ReturnsConnector
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

define( 'RC_VERSION', '1.0.0' );
define( 'RC_PLUGIN_FILE', __FILE__ );
define( 'RC_PLUGIN_DIR', plugin_dir_path( __FILE__ ) );

require_once RC_PLUGIN_DIR . 'includes/class-rc-signing.php';
require_once RC_PLUGIN_DIR . 'includes/class-rc-settings.php';
require_once RC_PLUGIN_DIR . 'includes/class-rc-connector-client.php';
require_once RC_PLUGIN_DIR . 'includes/class-rc-account.php';
require_once RC_PLUGIN_DIR . 'includes/class-rc-shortcode.php';
require_once RC_PLUGIN_DIR . 'includes/class-rc-order-metabox.php';

// The plugin reads and writes orders only through WooCommerce's CRUD (wc_get_order), so it works
// with High-Performance Order Storage as well as with posts.
add_action(
	'before_woocommerce_init',
	static function () {
		if ( class_exists( '\Automattic\WooCommerce\Utilities\FeaturesUtil' ) ) {
			\Automattic\WooCommerce\Utilities\FeaturesUtil::declare_compatibility( 'custom_order_tables', __FILE__, true );
		}
	}
);

add_action(
	'init',
	static function () {
		load_plugin_textdomain( 'returns-connector', false, dirname( plugin_basename( __FILE__ ) ) . '/languages' );
	}
);

add_action(
	'plugins_loaded',
	static function () {
		if ( ! class_exists( 'WooCommerce' ) ) {
			add_action( 'admin_notices', array( 'RC_Settings', 'woocommerce_missing_notice' ) );
			return;
		}
		RC_Settings::init();
		RC_Account::init();
		RC_Shortcode::init();
		RC_Order_Metabox::init();
	}
);

register_activation_hook( __FILE__, array( 'RC_Settings', 'activate' ) );
register_deactivation_hook( __FILE__, array( 'RC_Settings', 'deactivate' ) );
