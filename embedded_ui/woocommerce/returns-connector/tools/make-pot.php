<?php
/**
 * Writes languages/returns-connector.pot from the plugin's gettext calls: `php tools/make-pot.php`.
 *
 * Plugin name and description from the header are included as WordPress's own tools do.
 *
 * @package ReturnsConnector
 */

if ( 'cli' !== PHP_SAPI ) {
	exit;
}
require __DIR__ . '/pot.php';

$plugin = dirname( __DIR__ );
$header = (string) file_get_contents( $plugin . '/returns-connector.php', false, null, 0, 4096 );
preg_match( '/^\s*\*\s*Version:\s*(.+)$/mi', $header, $m );
$target = $plugin . '/languages/returns-connector.pot';
file_put_contents( $target, rc_pot_build( $plugin, isset( $m[1] ) ? trim( $m[1] ) : '0' ) );
echo "wrote $target\n";
