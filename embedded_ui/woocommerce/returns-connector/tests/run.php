<?php
/**
 * The plugin's PHP tests, without WordPress or PHPUnit: `php tests/run.php` (from anywhere).
 *
 * Checks RC_Signing against the vectors the Python side checks too
 * (tests/fixtures/woocommerce/plugin_vectors.json, or the file given as the first argument),
 * and that every translatable string of the plugin is in languages/returns-connector.pot.
 * Prints one line per check; exits 1 when any fails.
 *
 * @package ReturnsConnector
 */

define( 'RC_TESTING', true );
$plugin = dirname( __DIR__ );
require $plugin . '/includes/class-rc-signing.php';
require $plugin . '/tools/pot.php';

$vectors_file = isset( $argv[1] ) ? $argv[1] : dirname( $plugin, 3 ) . '/tests/fixtures/woocommerce/plugin_vectors.json';
$vectors      = json_decode( (string) file_get_contents( $vectors_file ), true );
$failures     = 0;
$checks       = 0;

/**
 * Record one check.
 *
 * @param string $name     What is checked.
 * @param mixed  $expected Expected value.
 * @param mixed  $actual   Actual value.
 */
function rc_check( $name, $expected, $actual ) {
	global $failures, $checks;
	++$checks;
	if ( $expected === $actual ) {
		echo "ok    $name\n";
		return;
	}
	++$failures;
	echo "FAIL  $name\n      expected: " . var_export( $expected, true ) . "\n      actual:   " . var_export( $actual, true ) . "\n";
}

if ( ! is_array( $vectors ) || empty( $vectors['customer_tokens'] ) || empty( $vectors['signed_requests'] ) ) {
	fwrite( STDERR, "no vectors in $vectors_file\n" );
	exit( 1 );
}
$secret = $vectors['secret'];

foreach ( $vectors['customer_tokens'] as $i => $vector ) {
	$c = $vector['claims'];
	rc_check(
		"customer token #$i",
		$vector['token'],
		RC_Signing::customer_token( $secret, $c['shop'], $c['customer'], $c['email'], $c['order'], $c['exp'], $c['nonce'] )
	);
}

foreach ( $vectors['signed_requests'] as $i => $vector ) {
	$label = "#$i {$vector['method']} {$vector['path']}";
	rc_check( "request message $label", $vector['message'], RC_Signing::request_message( $vector['timestamp'], $vector['method'], $vector['path'], $vector['body'] ) );
	rc_check( "request signature $label", $vector['signature'], RC_Signing::request_signature( $secret, $vector['timestamp'], $vector['method'], $vector['path'], $vector['body'] ) );
	$headers = RC_Signing::request_headers( $secret, 'alpine-store', strtolower( $vector['method'] ), $vector['path'], $vector['body'], (int) $vector['timestamp'] );
	rc_check( "request headers $label", array( 'X-RC-Shop' => 'alpine-store', 'X-RC-Timestamp' => $vector['timestamp'], 'X-RC-Signature' => $vector['signature'] ), $headers );
}

// Characters JSON encoders disagree on (control characters, quotes, slashes, U+2028/2029, DEL,
// astral and accented letters): the token Python's sign_customer_token makes for the same claims.
rc_check(
	'customer token with awkward characters matches Python',
	'eyJzaG9wIjoiYS9iIiwiY3VzdG9tZXIiOjMsImVtYWlsIjoieFx1MDAwMVxuXHRcIlxcLzw-JifigKjigKl_8J-YgMOfIMOpIiwib3JkZXIiOm51bGwsImV4cCI6NSwibm9uY2UiOiJubm5ubm5ubm5uIn0.N2UT2fJRL4YQoSAOfzvX-niX0JKg-SC1_yU3Pu8ay9A',
	RC_Signing::customer_token( 'sek', 'a/b', 3, "x\x01\n\t\"\\/<>&'\u{2028}\u{2029}\x7f\u{1F600}\u{DF} \u{E9}", null, 5, 'nnnnnnnnnn' )
);

// Fresh tokens: parseable, exp now+300, a 22-character nonce that differs each time.
$c     = $vectors['customer_tokens'][0]['claims'];
$one   = RC_Signing::fresh_customer_token( $secret, $c['shop'], $c['customer'], $c['email'], null );
$two   = RC_Signing::fresh_customer_token( $secret, $c['shop'], $c['customer'], $c['email'], null );
$parts = explode( '.', $one );
$claim = json_decode( base64_decode( strtr( $parts[0], '-_', '+/' ) ), true );
rc_check( 'fresh token has two url-safe parts', 1, preg_match( '/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/', $one ) );
rc_check( 'fresh token claims keys in order', array( 'shop', 'customer', 'email', 'order', 'exp', 'nonce' ), array_keys( (array) $claim ) );
rc_check( 'fresh token expires within 300 s', true, $claim['exp'] >= time() + 299 && $claim['exp'] <= time() + 300 );
rc_check( 'fresh token nonce length', 22, strlen( $claim['nonce'] ) );
rc_check( 'fresh tokens differ', true, $one !== $two );

// Invalid UTF-8 must not produce a token signed over an empty payload.
try {
	RC_Signing::token_payload( 's', 1, "\xff", null, 1, 'nnnnnnnn' );
	rc_check( 'invalid UTF-8 is refused', 'RuntimeException', 'no exception' );
} catch ( RuntimeException $e ) {
	rc_check( 'invalid UTF-8 is refused', 'RuntimeException', get_class( $e ) );
}

// The .pot holds every translatable string of the plugin.
$pot     = (string) file_get_contents( $plugin . '/languages/returns-connector.pot' );
$missing = array();
foreach ( rc_pot_strings( $plugin ) as $msgid => $refs ) {
	if ( false === strpos( $pot, 'msgid ' . rc_pot_quote( $msgid ) . "\n" ) ) {
		$missing[] = $msgid;
	}
}
rc_check( 'every translatable string is in the .pot (php tools/make-pot.php)', array(), $missing );
rc_check( 'no string uses another text domain', array(), rc_pot_foreign_domains( $plugin ) );

echo "\n$checks checks, $failures failed\n";
exit( $failures ? 1 : 0 );
