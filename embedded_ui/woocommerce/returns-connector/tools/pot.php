<?php
/**
 * Finds the plugin's translatable strings (for tools/make-pot.php and tests/run.php).
 *
 * Reads every PHP file of the plugin with PHP's own tokenizer and collects the literal arguments
 * of the gettext functions WordPress knows, with `translators:` comments. Command line only.
 *
 * @package ReturnsConnector
 */

if ( 'cli' !== PHP_SAPI ) {
	exit;
}

const RC_TEXT_DOMAIN = 'returns-connector';

/**
 * Gettext functions: name => the roles of their arguments, in order.
 */
const RC_POT_FUNCTIONS = array(
	'__'         => array( 'msgid', 'domain' ),
	'_e'         => array( 'msgid', 'domain' ),
	'esc_html__' => array( 'msgid', 'domain' ),
	'esc_html_e' => array( 'msgid', 'domain' ),
	'esc_attr__' => array( 'msgid', 'domain' ),
	'esc_attr_e' => array( 'msgid', 'domain' ),
	'_x'         => array( 'msgid', 'context', 'domain' ),
	'esc_html_x' => array( 'msgid', 'context', 'domain' ),
	'esc_attr_x' => array( 'msgid', 'context', 'domain' ),
	'_n'         => array( 'msgid', 'plural', null, 'domain' ),
);

/**
 * The plugin's PHP files (tests/ and tools/ are not shipped strings).
 *
 * @param string $plugin Plugin directory.
 * @return string[]
 */
function rc_pot_files( $plugin ) {
	$files = array();
	$it    = new RecursiveIteratorIterator( new RecursiveDirectoryIterator( $plugin, FilesystemIterator::SKIP_DOTS ) );
	foreach ( $it as $file ) {
		$rel = substr( $file->getPathname(), strlen( $plugin ) + 1 );
		if ( 'php' === $file->getExtension() && ! preg_match( '#^(tests|tools)/#', str_replace( '\\', '/', $rel ) ) ) {
			$files[] = str_replace( '\\', '/', $rel );
		}
	}
	sort( $files );
	return $files;
}

/**
 * The value of a PHP string literal token.
 *
 * @param string $literal The token text, quotes included.
 * @return string
 */
function rc_pot_literal( $literal ) {
	$inner = substr( $literal, 1, -1 );
	if ( "'" === $literal[0] ) {
		return str_replace( array( "\\'", '\\\\' ), array( "'", '\\' ), $inner );
	}
	return stripcslashes( $inner );
}

/**
 * Every gettext call of the plugin.
 *
 * @param string $plugin Plugin directory.
 * @return array[] Each: msgid, plural, context, domain (null when not a literal), ref, comment.
 */
function rc_pot_calls( $plugin ) {
	$calls = array();
	foreach ( rc_pot_files( $plugin ) as $rel ) {
		$tokens  = token_get_all( (string) file_get_contents( $plugin . '/' . $rel ) );
		$comment = null;
		$count   = count( $tokens );
		for ( $i = 0; $i < $count; $i++ ) {
			$t = $tokens[ $i ];
			if ( is_array( $t ) && T_COMMENT === $t[0] && false !== stripos( $t[1], 'translators:' ) ) {
				$comment = trim( preg_replace( '#^(/\*+|//)|\*+/$#', '', $t[1] ) );
				continue;
			}
			if ( ! is_array( $t ) || T_STRING !== $t[0] || ! isset( RC_POT_FUNCTIONS[ $t[1] ] ) ) {
				continue;
			}
			$j = $i + 1;
			while ( $j < $count && is_array( $tokens[ $j ] ) && T_WHITESPACE === $tokens[ $j ][0] ) {
				++$j;
			}
			if ( $j >= $count || '(' !== $tokens[ $j ] ) {
				continue;
			}
			// Split the arguments at depth 1; an argument is literal when it is one string token.
			$args  = array( array() );
			$depth = 0;
			for ( ++$j; $j < $count; $j++ ) {
				$tok = $tokens[ $j ];
				if ( in_array( $tok, array( '(', '[', '{' ), true ) ) {
					++$depth;
				} elseif ( in_array( $tok, array( ')', ']', '}' ), true ) ) {
					if ( 0 === $depth-- ) {
						break;
					}
				} elseif ( ',' === $tok && 0 === $depth ) {
					$args[] = array();
					continue;
				}
				if ( ! ( is_array( $tok ) && in_array( $tok[0], array( T_WHITESPACE, T_COMMENT ), true ) ) ) {
					$args[ count( $args ) - 1 ][] = $tok;
				}
			}
			$call = array( 'msgid' => null, 'plural' => null, 'context' => null, 'domain' => null, 'ref' => $rel . ':' . $t[2], 'comment' => $comment );
			foreach ( RC_POT_FUNCTIONS[ $t[1] ] as $k => $role ) {
				if ( null !== $role && isset( $args[ $k ] ) && 1 === count( $args[ $k ] ) && is_array( $args[ $k ][0] ) && T_CONSTANT_ENCAPSED_STRING === $args[ $k ][0][0] ) {
					$call[ $role ] = rc_pot_literal( $args[ $k ][0][1] );
				}
			}
			$comment = null;
			$calls[] = $call;
		}
	}
	return $calls;
}

/**
 * The plugin's strings: msgid => list of calls (text domain returns-connector only).
 *
 * @param string $plugin Plugin directory.
 * @return array<string,array[]>
 */
function rc_pot_strings( $plugin ) {
	$strings = array();
	foreach ( rc_pot_calls( $plugin ) as $call ) {
		if ( null !== $call['msgid'] && RC_TEXT_DOMAIN === $call['domain'] ) {
			$key               = ( null === $call['context'] ? '' : $call['context'] . "\x04" ) . $call['msgid'];
			$strings[ $key ][] = $call;
		}
	}
	return $strings;
}

/**
 * Calls whose text or domain is not a literal or whose domain is not the plugin's ("file:line").
 *
 * @param string $plugin Plugin directory.
 * @return string[]
 */
function rc_pot_foreign_domains( $plugin ) {
	$bad = array();
	foreach ( rc_pot_calls( $plugin ) as $call ) {
		if ( null === $call['msgid'] || RC_TEXT_DOMAIN !== $call['domain'] ) {
			$bad[] = $call['ref'];
		}
	}
	return $bad;
}

/**
 * A PO string literal.
 *
 * @param string $text Text.
 * @return string
 */
function rc_pot_quote( $text ) {
	return '"' . addcslashes( $text, "\\\"\n\t" ) . '"';
}

/**
 * The .pot file's text.
 *
 * @param string $plugin  Plugin directory.
 * @param string $version Plugin version.
 * @return string
 */
function rc_pot_build( $plugin, $version ) {
	$out = "# Copyright (C) Returns Connector\n"
		. "# This file is distributed under the GPL-2.0-or-later.\n"
		. "msgid \"\"\nmsgstr \"\"\n"
		. "\"Project-Id-Version: Returns Connector $version\\n\"\n"
		. "\"Report-Msgid-Bugs-To: \\n\"\n"
		. "\"PO-Revision-Date: YEAR-MO-DA HO:MI+ZONE\\n\"\n"
		. "\"Last-Translator: FULL NAME <EMAIL@ADDRESS>\\n\"\n"
		. "\"Language-Team: LANGUAGE <LL@li.org>\\n\"\n"
		. "\"Language: \\n\"\n"
		. "\"MIME-Version: 1.0\\n\"\n"
		. "\"Content-Type: text/plain; charset=UTF-8\\n\"\n"
		. "\"Content-Transfer-Encoding: 8bit\\n\"\n"
		. "\"X-Domain: returns-connector\\n\"\n";
	// The plugin header's name and description, as WordPress translates them on the Plugins screen.
	$header = (string) file_get_contents( $plugin . '/returns-connector.php', false, null, 0, 4096 );
	$strings = rc_pot_strings( $plugin );
	foreach ( array( 'Plugin Name', 'Description' ) as $field ) {
		if ( preg_match( '/^\s*\*\s*' . $field . ':\s*(.+)$/mi', $header, $m ) && ! isset( $strings[ trim( $m[1] ) ] ) ) {
			$out .= "\n#. $field of the plugin\n#: returns-connector.php\nmsgid " . rc_pot_quote( trim( $m[1] ) ) . "\nmsgstr \"\"\n";
		}
	}
	foreach ( $strings as $calls ) {
		$first = $calls[0];
		$out  .= "\n";
		foreach ( $calls as $call ) {
			if ( $call['comment'] ) {
				$out .= '#. ' . str_replace( "\n", "\n#. ", $call['comment'] ) . "\n";
				break;
			}
		}
		$out .= '#: ' . implode( ' ', array_unique( array_column( $calls, 'ref' ) ) ) . "\n";
		if ( preg_match( '/%(\d\$)?[sd]/', $first['msgid'] ) ) {
			$out .= "#, php-format\n";
		}
		if ( null !== $first['context'] ) {
			$out .= 'msgctxt ' . rc_pot_quote( $first['context'] ) . "\n";
		}
		$out .= 'msgid ' . rc_pot_quote( $first['msgid'] ) . "\n";
		if ( null !== $first['plural'] ) {
			$out .= 'msgid_plural ' . rc_pot_quote( $first['plural'] ) . "\nmsgstr[0] \"\"\nmsgstr[1] \"\"\n";
		} else {
			$out .= "msgstr \"\"\n";
		}
	}
	return $out;
}
