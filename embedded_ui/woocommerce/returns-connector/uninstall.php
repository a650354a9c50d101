<?php
/**
 * Uninstall: deletes the plugin's options (RC_Settings::OPTIONS) and nothing else. Returns,
 * refunds and order notes live in the connector and in WooCommerce's own orders.
 *
 * @package ReturnsConnector
 */

if ( ! defined( 'WP_UNINSTALL_PLUGIN' ) ) {
	exit;
}

require_once __DIR__ . '/includes/class-rc-settings.php';

foreach ( RC_Settings::OPTIONS as $rc_option ) {
	delete_option( $rc_option );
}
